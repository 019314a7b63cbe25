"""GAN backend: DCGAN / SNGAN ResNet image nets, MLP toy nets, hinge and non-saturating losses."""

from generative_bench.backends.gan.backend import GANBackend
from generative_bench.backends.gan.losses import HingeLoss, NonSaturatingLoss, get_loss
from generative_bench.backends.gan.nets_dcgan import DCGANDiscriminator, DCGANGenerator
from generative_bench.backends.gan.nets_mlp import MLPDiscriminator, MLPGenerator
from generative_bench.backends.gan.nets_sngan import SNGANDiscriminator, SNGANGenerator

__all__ = [
    "GANBackend", "HingeLoss", "NonSaturatingLoss", "get_loss", "DCGANGenerator", "DCGANDiscriminator",
    "SNGANGenerator", "SNGANDiscriminator", "MLPGenerator", "MLPDiscriminator",
]
