"""Helpers sphinx-gallery calls while it executes the tutorials."""

from __future__ import annotations

import os
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
    # The tutorials train small models step by step; one thread avoids the
    # oversubscription that makes such loops many times slower on a busy
    # 2-core machine. ATTNLIB_NUM_THREADS overrides it.
    torch.set_num_threads(int(os.environ.get("ATTNLIB_NUM_THREADS", "1")))
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
