"""Layers: pure (forward, backward) pairs with explicit caches. See `fnnet.layers.core`."""

from fnnet.layers.conv import col2im, convolution, im2col, pooling
from fnnet.layers.conv_fast import ConvImpl
from fnnet.layers.core import Layer, add, affine, mul, relu, sigmoid, softmax_with_loss
from fnnet.layers.normalization import batch_norm, dropout

__all__ = ["Layer", "add", "affine", "mul", "relu", "sigmoid", "softmax_with_loss", "batch_norm", "dropout",
           "im2col", "col2im", "convolution", "pooling", "ConvImpl"]
