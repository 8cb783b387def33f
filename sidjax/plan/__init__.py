"""Memory planning: will a model's SFT or GRPO step fit on a mesh? `memory.py` computes
per-device bytes abstractly (params, optimizer, gradients exact; activations and KV cache
estimated) for any mesh shape on a laptop; `stage.py` is the `plan` stage behind
`configs/plan.py`. It sits above `model/` and `train/` because it reads both."""
