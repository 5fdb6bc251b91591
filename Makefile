.PHONY: setup run test bench

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/isoscribe demo --out demo-out

test: setup
	bash scripts/test.sh

bench: setup
	.venv/bin/isoscribe bench isolation --quick
	.venv/bin/isoscribe bench asr --quick
	.venv/bin/isoscribe bench pipeline --quick
	.venv/bin/isoscribe bench service --quick
	.venv/bin/isoscribe bench summary --quick
	.venv/bin/isoscribe bench accuracy --quick
	.venv/bin/isoscribe bench throughput --quick
