"""Model families (``model.family``): the GAN, the VAE baseline, TimeGAN; see ``families.base``."""

from ganforge.families.base import FAMILIES, Family, get_family, register_family
from ganforge.families import gan, vae, timegan  # noqa: F401,I001  (they register themselves, in this order)

__all__ = ["FAMILIES", "Family", "get_family", "register_family"]
