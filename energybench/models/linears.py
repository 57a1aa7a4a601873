"""Every projection as an ``nn.Linear``: GPT-2's ``Conv1D`` layers, converted exactly, so that
quantizers that only know ``nn.Linear`` (torch.ao, torchao) quantize them too."""

from __future__ import annotations

import torch
from torch import nn


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` (GPT-2 projections, y = x W + b) by an equal ``nn.Linear``.

    Dynamic quantization only knows ``nn.Linear``; without this, INT8 GPT-2 would quantize
    the LM head and nothing else. Returns the number of modules converted.
    """
    from transformers.pytorch_utils import Conv1D  # deferred: heavy

    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, Conv1D)]
    for name, conv in targets:
        in_features, out_features = conv.weight.shape
        linear = nn.Linear(in_features, out_features, bias=conv.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.t())
            if conv.bias is not None:
                linear.bias.copy_(conv.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)
    return len(targets)
