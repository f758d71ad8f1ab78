"""Layers: pure (forward, backward) pairs with explicit caches (see `fnnet.layers.core`), and the
book's layer classes as constructors that know their shapes, stacked by `serial` and joined side by
side by `residual` and `concat` (see `fnnet.layers.compose`)."""

from fnnet.layers.compose import (
    Affine,
    BatchNormalization,
    Block,
    Convolution,
    Dropout,
    Flatten,
    GlobalAveragePooling,
    LeakyRelu,
    Pooling,
    Relu,
    ShapeError,
    Sigmoid,
    Softmax,
    Tanh,
    concat,
    residual,
    serial,
    summary,
)
from fnnet.layers.conv import col2im, conv_output_size, convolution, global_average_pooling, im2col, pooling
from fnnet.layers.conv_fast import ConvImpl
from fnnet.layers.core import (
    Layer,
    add,
    affine,
    leaky_relu,
    mul,
    relu,
    sigmoid,
    softmax,
    softmax_with_loss,
    tanh,
)
from fnnet.layers.normalization import batch_norm, dropout

__all__ = ["Layer", "add", "affine", "mul", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
           "softmax_with_loss", "batch_norm", "dropout",
           "im2col", "col2im", "conv_output_size", "convolution", "pooling", "global_average_pooling",
           "ConvImpl", "Block", "ShapeError", "serial", "residual", "concat", "summary", "Affine", "Relu",
           "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Convolution", "Pooling", "BatchNormalization",
           "Dropout", "Flatten", "GlobalAveragePooling"]
