"""The package's layering: the models are built from the layers, so `fnnet.layers` never imports
`fnnet.models`, not even lazily inside a function (`Block.model` once did)."""

import ast
import pathlib
import subprocess
import sys

import fnnet.layers

LAYERS = pathlib.Path(fnnet.layers.__file__).parent


def test_a_network_of_layers_trains_without_importing_the_models():
    code = "\n".join([
        "import sys",
        "import jax, numpy as np",
        "from fnnet.layers.compose import Affine, Relu, serial",
        "model = serial(Affine(5), Relu(), Affine(3)).model((4,))",
        "params, state = model.init(jax.random.PRNGKey(0))",
        "loss, grads, _ = model.loss_and_grad(params, state, np.ones((2, 4), np.float32), np.array([0, 2]))",
        "models = sorted(m for m in sys.modules if m.startswith('fnnet.models'))",
        "print(models, sorted(grads), float(loss) > 0)",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "[] ['W1', 'W2', 'b1', 'b2'] True"


def test_no_layer_module_imports_the_models():
    found = []
    for path in sorted(LAYERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith("fnnet.models")]
    assert len(list(LAYERS.glob("*.py"))) >= 6 and not found, found


def test_the_models_share_the_layers_model_contract():
    from fnnet import models
    from fnnet.layers import compose

    assert models.Model is compose.Model and models.sequential is compose.sequential
    assert models.net_loss_and_grad is compose.net_loss_and_grad
