"""A stage for the isolation runtime's GPU check: allocates GPU memory with torch, holds it, may crash."""
import os
import time


def load(config):
    import torch

    device = config["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.zeros(1, device=device)
    return device


def run(device, request):
    import torch

    block = torch.empty(int(request["mb"]) * 2**20, dtype=torch.uint8, device=device)
    block.fill_(1)
    torch.cuda.synchronize()
    time.sleep(request.get("hold_s", 1.5))
    if request.get("crash"):
        os._exit(3)
    return {"device": device, "torch_peak_mb": torch.cuda.max_memory_allocated() / 2**20, "pid": os.getpid()}
