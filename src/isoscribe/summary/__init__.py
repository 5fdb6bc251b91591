"""Meeting summaries: backends · summarizer · extraction (topics, decisions, action items) · grounding · text.

Import the submodules themselves: this package's ``__init__`` stays empty of imports because
``isoscribe.transcript`` re-exports the data types of ``isoscribe.summary.types``.
"""
