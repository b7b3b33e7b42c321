"""Networks: a name maps to builders of G and D from the model config (``registry``); each module
here is one net that registers itself on import.

Networks never see the loop, the loss or the data files: ``G(z) -> x``, ``D(x) -> logits``.
"""

from ganforge.nets.registry import NETS, NetFamily, get_net, register_net
from ganforge.nets import dcgan, mlp, pix2pix, progressive, sequence, tabular, timegan  # noqa: F401  (they register)

__all__ = ["NETS", "NetFamily", "get_net", "register_net"]
