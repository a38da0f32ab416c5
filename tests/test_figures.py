"""Figures from curve files: parsing, seed means, files written, non-empty and byte-stable."""

from __future__ import annotations

import numpy as np

from globaldiff.report.figures import figure5, validation_points
from globaldiff.report.readers import read_curve

HEADER = "epoch,loss,val_backbone_HR@20,val_diffusion_HR@20,val_fusion_HR@20,val_backbone_NDCG@20," \
         "val_diffusion_NDCG@20,val_fusion_NDCG@20,selected\n"


def write_curve(path, rows):
    path.write_text(HEADER + "".join(rows))
    return read_curve(path)


def test_validation_points_mean_std_over_common_epochs(tmp_path):
    a = write_curve(tmp_path / "a.csv", ["1,0.5,,,,,,,\n", "5,0.4,0.2,0.1,0.3,0.1,0.05,0.15,True\n",
                                         "10,0.3,0.2,0.2,0.4,0.1,0.1,0.2,True\n"])
    b = write_curve(tmp_path / "b.csv", ["5,0.4,0.2,0.3,0.5,0.1,0.05,0.15,\n"])
    epochs, mean, std = validation_points([a, b], "val_fusion_HR@20")
    assert epochs.tolist() == [5]                        # epoch 10 is missing from b
    np.testing.assert_allclose(mean, [0.4])
    np.testing.assert_allclose(std, [np.std([0.3, 0.5], ddof=1)])
    epochs, mean, std = validation_points([a], "val_fusion_HR@20")
    assert epochs.tolist() == [5, 10] and std.tolist() == [0.0, 0.0]


def test_figure5_writes_stable_png_and_pdf(tmp_path):
    curve = write_curve(tmp_path / "a.csv", ["5,0.4,0.2,0.1,0.3,0.1,0.05,0.15,True\n",
                                             "10,0.3,0.2,0.2,0.4,0.1,0.1,0.2,\n"])
    paths = figure5({"sasrec": [curve, curve]}, tmp_path / "fig5", "ml-1m")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    first = [p.read_bytes() for p in paths]
    assert first[0].startswith(b"\x89PNG") and first[1].startswith(b"%PDF") and all(len(b) > 5000 for b in first)
    figure5({"sasrec": [curve, curve]}, tmp_path / "fig5", "ml-1m")
    assert [p.read_bytes() for p in paths] == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("fig5")) == ["fig5.pdf", "fig5.png"]


def test_figure4_and_figure6_write_stable_files(tmp_path):
    from globaldiff.report.figures import figure4, figure6

    def metrics(hr, ndcg):
        return {"test": {"fusion": {"HR@20": hr, "NDCG@20": ndcg}}}

    runs = {"full": [metrics(0.30, 0.12), metrics(0.32, 0.13)], "target": [metrics(0.29, 0.11)], "none": [metrics(0.25, 0.1)]}
    paths = figure4(runs, tmp_path / "fig4", "ml-1m", "sasrec")
    first = [p.read_bytes() for p in paths]
    assert first[0].startswith(b"\x89PNG") and first[1].startswith(b"%PDF") and all(len(b) > 5000 for b in first)
    assert [p.read_bytes() for p in figure4(runs, tmp_path / "fig4", "ml-1m", "sasrec")] == first
    curve = write_curve(tmp_path / "a.csv", ["5,0.4,0.2,0.1,0.3,0.1,0.05,0.15,True\n",
                                             "10,0.3,0.2,0.2,0.4,0.1,0.1,0.2,\n"])
    paths = figure6({"T = 20": [curve], "T = 100": [curve, curve]}, tmp_path / "fig6", "ml-1m", "sasrec")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 5000 for p in paths)


def test_figure3_writes_png_and_pdf(tmp_path):
    from globaldiff.report.figures import figure3

    def run(shift):
        return {"test": {f"P{p}": {m: {"HR@20": 0.3 - 0.02 * p + shift + (0.01 if m == "fusion" else 0),
                                       "NDCG@20": 0.1 - 0.01 * p + shift}
                                   for m in ("backbone", "fusion")} for p in (1, 2, 3, 4)}}

    paths = figure3([run(0.0), run(0.01)], tmp_path / "fig3", "ml-1m", "sasrec")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 5000 for p in paths)
