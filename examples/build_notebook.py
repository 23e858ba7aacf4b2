"""Writes ``examples/notebook.ipynb`` (outputs cleared): ``python examples/build_notebook.py``.

The notebook is generated so its cells stay reviewable as plain Python in this file.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        "# Forge: train (or find) an experiment, load it, evaluate it\n\n"
        "`LoadTrained.from_configs(..., build=True)` **may train**: it runs the Luigi pipeline "
        "for these configs when no finished experiment exists, and reuses it otherwise. "
        "Results go to `$FORGE_NOTEBOOK_RESULTS` (default: a temporary folder).",
    ),
    (
        "code",
        "import os\n"
        "import sys\n"
        "import tempfile\n"
        "from pathlib import Path\n\n"
        "import matplotlib\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / 'configs').is_dir())\n"
        "# Plugins are read when Forge first needs its registry: name them before importing it.\n"
        "sys.path.insert(0, str(REPO))\n"
        "os.environ['FORGE_PLUGINS'] = ','.join(\n"
        "    filter(None, [os.environ.get('FORGE_PLUGINS'), 'examples.vae.plugins'])\n"
        ")\n\n"
        "from pipelines import LoadTrained  # noqa: E402\n\n"
        "if not os.environ.get('DISPLAY') and 'inline' not in matplotlib.get_backend():\n"
        "    matplotlib.use('Agg')\n"
        "RESULTS = Path(os.environ.get('FORGE_NOTEBOOK_RESULTS') or tempfile.mkdtemp("
        "prefix='forge-nb-'))\n"
        "RESULTS",
    ),
    (
        "code",
        "exp = LoadTrained.from_configs(\n"
        "    data_config=REPO / 'configs/data/digits.yaml',\n"
        "    model_config=REPO / 'configs/model/mlp_torch.yaml',\n"
        "    overrides='train.epochs=3',\n"
        "    results_dir=RESULTS,\n"
        "    build=True,  # trains only if this experiment does not exist yet\n"
        ")\n"
        "exp.directory, exp.framework",
    ),
    ("markdown", "Anyone can now load it from its directory alone, e.g. on another machine:"),
    (
        "code",
        "exp = LoadTrained(exp.directory)\n"
        "x_test, y_test = exp.data('test')\n"
        "pred = exp.predict(x_test).argmax(axis=-1)\n"
        "accuracy = float((pred == y_test).mean())\n"
        "print(f'test accuracy: {accuracy:.3f} on {len(y_test)} digits')\n"
        "assert accuracy > 0.5",
    ),
    (
        "code",
        "epochs = [row['epoch'] for row in exp.metrics]\n"
        "fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))\n"
        "for ax, name in zip(axes, ('loss', 'accuracy')):\n"
        "    ax.plot(epochs, [row[name] for row in exp.metrics], marker='o', label='train')\n"
        "    ax.plot(epochs, [row['val_' + name] for row in exp.metrics], marker='o', "
        "label='val')\n"
        "    ax.set_xlabel('epoch')\n"
        "    ax.set_title(name)\n"
        "    ax.legend()\n"
        "fig.tight_layout()",
    ),
    (
        "code",
        "classes = int(y_test.max()) + 1\n"
        "confusion = np.zeros((classes, classes), dtype=int)\n"
        "np.add.at(confusion, (y_test, pred), 1)\n"
        "fig, ax = plt.subplots(figsize=(4.5, 4))\n"
        "ax.imshow(confusion, cmap='Blues')\n"
        "for (i, j), count in np.ndenumerate(confusion):\n"
        "    if count:\n"
        "        ax.text(j, i, str(count), ha='center', va='center', fontsize=7)\n"
        "ax.set_xlabel('predicted')\n"
        "ax.set_ylabel('true')\n"
        "ax.set_title('confusion matrix (test)')\n"
        "fig.tight_layout()",
    ),
    (
        "code",
        "# The code-free export predicts the same without the model-building code.\n"
        "same = LoadTrained(exp.directory, code_free=True).predict(x_test)\n"
        "np.testing.assert_allclose(same, exp.predict(x_test), atol=1e-5)\n"
        "[(e.name, e.split, e.metrics) for e in exp.evaluations]",
    ),
    (
        "markdown",
        "## Bring your own objective: a VAE on unlabelled digits\n\n"
        "`examples/vae/plugins.py` registers a `vae` builder, the objective `vae_elbo` (it "
        "returns `loss`, `elbo`, `recon` and `kl`, all logged for train and validation) and "
        "the metric `recon_error`; the data config has only `x`. The train config keeps the "
        "epoch with the best `val_elbo`.",
    ),
    (
        "code",
        "VAE = REPO / 'examples' / 'vae' / 'configs'\n"
        "vae = LoadTrained.from_configs(\n"
        "    data_config=VAE / 'data' / 'digits_unlabelled.yaml',\n"
        "    model_config=VAE / 'model' / 'vae_torch.yaml',\n"
        "    train_config=VAE / 'train' / 'vae.yaml',\n"
        "    overrides='train.epochs=5',\n"
        "    results_dir=RESULTS,\n"
        "    build=True,\n"
        ")\n"
        "elbo = [round(row['val_elbo'], 2) for row in vae.metrics]\n"
        "print('validation ELBO per epoch:', elbo)\n"
        "assert elbo[-1] > elbo[0]",
    ),
    (
        "code",
        "# predict returns the model's own output structure, here a dict of arrays.\n"
        "x_vae, _ = vae.data('test')\n"
        "out = vae.predict(x_vae[:8])\n"
        "print({name: value.shape for name, value in out.items()})\n"
        "fig, axes = plt.subplots(2, 8, figsize=(9, 2.5))\n"
        "for i in range(8):\n"
        "    axes[0, i].imshow(x_vae[i].reshape(8, 8), cmap='gray_r')\n"
        "    axes[1, i].imshow(out['recon'][i].reshape(8, 8), cmap='gray_r')\n"
        "    axes[0, i].axis('off')\n"
        "    axes[1, i].axis('off')\n"
        "axes[0, 0].set_title('test digits', loc='left')\n"
        "axes[1, 0].set_title('reconstructions', loc='left')\n"
        "fig.tight_layout()",
    ),
    (
        "code",
        "# Decode points of the latent space with the restored model's own decoder.\n"
        "import torch\n\n"
        "latent = vae.config['model']['params']['latent']\n"
        "z = np.zeros((2 * 8, latent), dtype=np.float32)\n"
        "z[:8, 0] = np.linspace(-2, 2, 8)\n"
        "z[8:, 1] = np.linspace(-2, 2, 8)\n"
        "with torch.no_grad():\n"
        "    images = vae.model.decode(torch.from_numpy(z)).numpy()\n"
        "fig, axes = plt.subplots(2, 8, figsize=(9, 2.5))\n"
        "for ax, image in zip(axes.flat, images, strict=True):\n"
        "    ax.imshow(image.reshape(8, 8), cmap='gray_r')\n"
        "    ax.axis('off')\n"
        "fig.suptitle('decoded latents: z[0] (top) and z[1] (bottom) from -2 to 2')\n"
        "fig.tight_layout()",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, with no outputs."""
    cells = [
        new_markdown_cell(text) if kind == "markdown" else new_code_cell(text)
        for kind, text in CELLS
    ]
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number}"  # stable ids: regenerating gives the same file
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


if __name__ == "__main__":
    target = Path(__file__).with_name("notebook.ipynb")
    nbformat.write(build(), target)
    print(f"wrote {target}")
