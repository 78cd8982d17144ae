"""Helpers sphinx-gallery calls while it executes the tutorials."""

from __future__ import annotations

import random


def reset_state(gallery_conf, fname):
    """Give every tutorial the same fresh start: seeds, threads and plot style.

    Each tutorial seeds itself too (so a downloaded script is reproducible);
    this makes sure no tutorial inherits the random state of the previous one.
    """
    import matplotlib as mpl
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.use_deterministic_algorithms(False)
    mpl.rcdefaults()
    # Figures are drawn on an opaque white card so that they stay readable when
    # furo switches to its dark theme (see _static/custom.css).
    mpl.rcParams.update(
        {
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "figure.dpi": 100,
            "axes.titleweight": "bold",
            "figure.constrained_layout.use": True,
        }
    )
