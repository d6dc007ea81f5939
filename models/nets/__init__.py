"""Networks that several families build on (not families themselves).

- ``models.nets.made``: ``MaskedLinear`` and ``MADE``, the autoregressive masked MLP
  of Germain et al. 2015, used by the ``flow`` family's MAF layers (Papamakarios et al.
  2017) and meant for the ``made``, ``nade`` and ``maf`` families.
- ``models.nets.gated``: ``GatedLayer`` and ``gate``, one layer of the gated PixelCNN's
  vertical and horizontal stacks (van den Oord et al. 2016), used by ``gated_pixelcnn``
  and ``pixelvae``'s decoder.

Any family may import this package; it imports no family.
"""

from models.nets.made import MADE, MaskedLinear

__all__ = ["MADE", "MaskedLinear"]
