"""A timeline as a picture: class probabilities over time as a heat strip, the segments as bands, key frames along
the time axis. Needs matplotlib (``pip install "tps-timm[plot]"``), imported only here."""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ['PLOT_INSTALL', 'check_plotting', 'plot_timeline']

PLOT_INSTALL = 'pip install "tps-timm[plot]"'
_KEY_FRAMES = 6
_MAX_ROWS = 12  # classes drawn in the heat strip: those that reach the highest probability


def check_plotting() -> Optional[str]:
    """None when plots can be drawn here, else the one line saying what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f'drawing a plot needs matplotlib: {PLOT_INSTALL}'
    return None


def plot_timeline(path: str, record: Dict[str, Any], probs: np.ndarray, class_names: Sequence[str],
                  thumbnails: List[np.ndarray]) -> None:
    """Draw one video's timeline (a :func:`tps_timm.timeline.timeline_record` with its windows' ``probs``, windows x
    classes, and a key frame per window) to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display
    import matplotlib.pyplot as plt

    from .timeline import window_edges
    windows = record['windows']
    starts = np.array([w['start'] for w in windows])
    ends = np.array([w['end'] for w in windows])
    duration = max(record['duration'], 1e-6)
    shown = np.argsort(-probs.max(0))[:min(_MAX_ROWS, probs.shape[1])]
    shown = np.sort(shown)
    fig, (frames_ax, heat_ax, band_ax) = plt.subplots(
        3, 1, figsize=(12, 2.2 + 0.28 * len(shown)), sharex=True,
        gridspec_kw=dict(height_ratios=[1.4, 0.28 * len(shown) + 0.4, 0.5]))
    frames_ax.set_xlim(0, duration)
    frames_ax.set_yticks([])
    picks = np.unique(np.linspace(0, len(windows) - 1, min(_KEY_FRAMES, len(windows))).round().astype(int))
    width = duration / max(len(picks), 1) * 0.9
    for i in picks:
        if i < len(thumbnails):
            centre = (starts[i] + ends[i]) / 2
            left = min(max(centre - width / 2, 0), duration - width)
            frames_ax.imshow(thumbnails[i], extent=(left, left + width, 0, 1), aspect='auto')
    frames_ax.set_ylim(0, 1)
    frames_ax.set_title(record['video'], fontsize=9, loc='left')
    # each window coloured over the time it stands for (as the segments count it): its neighbours' midpoints
    edges = window_edges(starts, ends)
    heat = heat_ax.pcolormesh(edges, np.arange(len(shown) + 1), probs[:, shown].T, cmap='viridis', vmin=0, vmax=1,
                              shading='flat')
    heat_ax.set_yticks(np.arange(len(shown)) + 0.5, [class_names[c] for c in shown], fontsize=8)
    heat_ax.invert_yaxis()
    fig.colorbar(heat, ax=[heat_ax], pad=0.01, fraction=0.02, label='probability')
    colours = plt.get_cmap('tab10')
    band_ax.set_yticks([])
    for segment in record['segments']:
        colour = colours(list(class_names).index(segment['label']) % 10)
        band_ax.axvspan(segment['start'], segment['end'], color=colour, alpha=0.8)
        band_ax.text((segment['start'] + segment['end']) / 2, 0.5, segment['label'], ha='center', va='center',
                     fontsize=7, clip_on=True)
    band_ax.set_xlabel('seconds')
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
