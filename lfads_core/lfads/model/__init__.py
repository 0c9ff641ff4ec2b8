"""LFADS model parts (PyTorch).  See :class:`LFADS` for the composed model."""

from .augmentations import CoordinatedDropout, SampleValidation
from .controller import Controller
from .encoders import CIEncoder, ICEncoder
from .generator import ClippedGRUCell, Generator, gru_update
from .lfads import LFADS, LFADSOutput
from .likelihoods import (LIKELIHOODS, GammaLikelihood, GaussianLikelihood, PoissonLikelihood, ZIGLikelihood,
                          get_likelihood, register_likelihood)
from .priors import AR1Prior, GaussianPrior, kl_diag_gaussians, kl_diag_vs_ar1
from .readout import ReadIn, ReadOut

__all__ = [
    "LFADS",
    "LFADSOutput",
    "ICEncoder",
    "CIEncoder",
    "Controller",
    "Generator",
    "ClippedGRUCell",
    "gru_update",
    "GaussianPrior",
    "AR1Prior",
    "kl_diag_gaussians",
    "kl_diag_vs_ar1",
    "ReadIn",
    "ReadOut",
    "PoissonLikelihood",
    "GaussianLikelihood",
    "GammaLikelihood",
    "ZIGLikelihood",
    "LIKELIHOODS",
    "register_likelihood",
    "get_likelihood",
    "CoordinatedDropout",
    "SampleValidation",
]
