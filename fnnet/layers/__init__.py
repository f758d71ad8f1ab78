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
    Pooling,
    Relu,
    ShapeError,
    Sigmoid,
    concat,
    residual,
    serial,
    summary,
)
from fnnet.layers.conv import col2im, conv_output_size, convolution, global_average_pooling, im2col, pooling
from fnnet.layers.conv_fast import ConvImpl
from fnnet.layers.core import Layer, add, affine, mul, relu, sigmoid, softmax_with_loss
from fnnet.layers.normalization import batch_norm, dropout

__all__ = ["Layer", "add", "affine", "mul", "relu", "sigmoid", "softmax_with_loss", "batch_norm", "dropout",
           "im2col", "col2im", "conv_output_size", "convolution", "pooling", "global_average_pooling",
           "ConvImpl", "Block", "ShapeError", "serial", "residual", "concat", "summary", "Affine", "Relu",
           "Sigmoid", "Convolution", "Pooling", "BatchNormalization", "Dropout", "Flatten",
           "GlobalAveragePooling"]
