"""Chapter 8: a small ResNet and an inception-style network, built from the book's layers with
`residual` and `concat`, trained with Adam.

    python scripts/ch08_resnet.py [--net resnet|inception] [--epochs 5] [--seed 0] [--data-dir DIR]
    fnnet train --model scripts/ch08_resnet.py:resnet --optimizer adam --epochs 5 \
        --schedule step --decay-epochs 2
    fnnet eval --params runs/resnet-mnist/params.npz --model scripts/ch08_resnet.py:resnet

`resnet` (book section 8.2.4): a stem convolution, then three stages of one residual block each
(two 3x3 convolutions with Batch Normalization, y = relu(F(x) + x)), 16, 32 and 64 channels; max
pooling halves the maps between stages, and where the channels grow the shortcut is a 1x1
convolution with Batch Normalization. Global average pooling and Affine 10 classify.
`inception` (section 8.2.3, GoogLeNet): a stem, then two inception blocks, each four branches side
by side (1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pooling then 1x1, every convolution with Batch
Normalization and ReLU) joined on the channels.

Both end in global average pooling, so they take MNIST's 28x28 and the 8x8 digits alike. Importing
this file only builds them (`fnnet.layers.Block`s); running it prints the network's summary, trains
it with `fnnet.training.fit` (Adam, lr 0.001, batch 100) and prints the test accuracy. MNIST comes
from --data-dir or $FNNET_DATA_DIR (nothing is downloaded); without it, the 8x8 digits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fnnet.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    GlobalAveragePooling,
    Pooling,
    Relu,
    concat,
    residual,
    serial,
    summary,
)

WIDTHS = (16, 32, 64)


def conv_bn(channels, size=3):
    """A size x size convolution that keeps the map size, then Batch Normalization (per channel)."""
    return serial(Convolution(channels, size, pad=size // 2), BatchNormalization())


def basic_block(channels, project=False):
    """ResNet's basic block: relu(F(x) + shortcut(x)), F = conv-BN-ReLU-conv-BN; the shortcut is the
    identity, or (project=True, where the channels change) a 1x1 convolution with Batch Norm."""
    return serial(residual(conv_bn(channels), Relu(), conv_bn(channels),
                           shortcut=conv_bn(channels, 1) if project else None),
                  Relu())


def make_resnet(widths=WIDTHS, classes=10):
    """The three-stage ResNet with `widths` channels per stage."""
    c1, c2, c3 = widths
    return serial(
        conv_bn(c1), Relu(),                          # stem
        basic_block(c1),                              # stage 1: (c1, H, W)
        Pooling(2), basic_block(c2, project=True),    # stage 2: (c2, H/2, W/2)
        Pooling(2), basic_block(c3, project=True),    # stage 3: (c3, H/4, W/4)
        GlobalAveragePooling(), Affine(classes),
    )


def conv_bn_relu(channels, size):
    """conv_bn, then ReLU: each convolution of the inception blocks (Batch Normalization as in
    GoogLeNet's second version)."""
    return serial(conv_bn(channels, size), Relu())


def inception_block(c1, c3, c5, cp):
    """GoogLeNet's inception module, four branches on one input, c1 + c3 + c5 + cp channels out:
    1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pooling then 1x1 (the 1x1s in front cut the channels)."""
    return concat(
        conv_bn_relu(c1, 1),
        serial(conv_bn_relu(c3 // 2, 1), conv_bn_relu(c3, 3)),
        serial(conv_bn_relu(c5 // 2, 1), conv_bn_relu(c5, 5)),
        serial(Pooling(3, stride=1, pad=1), conv_bn_relu(cp, 1)),
    )


resnet = make_resnet()

inception = serial(
    conv_bn(16), Relu(), Pooling(2),                  # (16, H/2, W/2)
    inception_block(8, 16, 8, 8), Pooling(2),         # (40, H/4, W/4)
    inception_block(16, 32, 8, 8),                    # (64, H/4, W/4)
    GlobalAveragePooling(), Affine(10),
)

NETS = {"resnet": resnet, "inception": inception}


def load_data(data_dir=None):
    """(name, ((x_train, t_train), (x_test, t_test))) with x (N, 1, H, W): MNIST, or the 8x8 digits
    when MNIST is not found."""
    from fnnet.datasets import MNISTNotFoundError, load_digits, load_mnist

    try:
        return "mnist", load_mnist(normalize=True, flatten=False, data_dir=data_dir, download=False)
    except MNISTNotFoundError:
        print("MNIST not found (set FNNET_DATA_DIR or --data-dir); using the 8x8 digits")
    return "digits", load_digits(normalize=True, flatten=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=sorted(NETS), default="resnet")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    args = p.parse_args(argv)

    from fnnet.optimizers import adam
    from fnnet.training import evaluate, fit

    net = NETS[args.net]
    name, (train, test) = load_data(args.data_dir)
    shape = tuple(train[0].shape[1:])
    print(summary(net, shape))
    print(f"{name}: {len(train[0])} training and {len(test[0])} test images")
    model = net.model(shape)
    start = time.perf_counter()
    result = fit(model, adam(args.lr), train, test, epochs=args.epochs, batch_size=args.batch_size,
                 seed=args.seed)
    seconds = time.perf_counter() - start
    acc = evaluate(model, result.params, result.state, *test)
    print(f"{args.net} on {name}: test accuracy {acc:.4f} after {args.epochs} epochs "
          f"({seconds:.0f} s, including compilation)")
    return acc


if __name__ == "__main__":
    main()
