"""Rectified activations of Xu et al. 2015 as pure JAX functions; Flax modules of them are in
`rectifiers.linen` and `rectifiers.nnx`."""

from rectifiers.functional import leaky_relu, prelu, relu, rrelu, rrelu_test_slope

__all__ = ["relu", "leaky_relu", "prelu", "rrelu", "rrelu_test_slope"]
