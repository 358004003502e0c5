"""The measurement scripts behind the profiles' rows run end to end (smoke profile, tiny grids)."""
import json

import pytest

from tests.data_scripts.layouts import load_script


def test_parse_variant_splits_row_model_and_options():
    curves = load_script("learning_curves")
    name, row, model, options = curves.parse_variant("w8:width=8,batch=16,lr=2e-3,decay=cosine,ema=2000,"
                                                     "model.l1_weights=roi_balanced,weights=inverse_sqrt")
    assert name == "w8"
    assert row == {"width": 8, "batch_size": 16, "lr": 2e-3, "decay": "cosine", "ema": 2000}
    assert model == {"l1_weights": "roi_balanced"} and options == {"weights": "inverse_sqrt"}


@pytest.mark.parametrize("text, named", [("a: the row:steps=900", "' the row:steps=900'"), ("a:stpes=900", "'stpes'"),
                                         ("a:steps", "'steps'")])
def test_parse_variant_rejects_what_is_not_a_known_key_value(text, named):
    curves = load_script("learning_curves")
    with pytest.raises(ValueError, match=named):
        curves.parse_variant(text)


@pytest.mark.parametrize("family", ["mask_vae", "sae", "l2s", "stylegan", "w_encoder"])
def test_learning_curves_record_quality_against_seconds(family, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    curves = load_script("learning_curves")
    variants = ["a:steps=4", "b:steps=4,lr=1e-4" + (",weights=inverse_sqrt" if family == "mask_vae" else "")]
    args = ["--family", family, "--profile", "smoke", "--evals", "2", "--n-eval", "8", "--out", str(tmp_path)]
    for variant in variants:
        args += ["--variant", variant]
    assert curves.main(args) == 0
    data = json.loads((tmp_path / f"{family}.json").read_text())
    assert set(data["variants"]) == {"a", "b"}
    curve = data["variants"]["b"]["curve"]
    assert curve["step"] == [0.0, 2.0, 4.0] and len(curve[curves.METRIC[family]]) == 3
    assert curve["seconds"][0] < curve["seconds"][-1]
    assert data["variants"]["b"]["row"]["lr"] == 1e-4
    if family == "l2s":  # chapter 3's edit measure with the model as the SMPN, a share in [0, 1]
        assert all(0 <= v <= 1 for v in curve["edit_share"] + curve["mask_iou"]) and len(curve["edit_share"]) == 3
    assert (tmp_path / f"{family}.png").stat().st_size > 0
    table = (tmp_path / f"{family}.md").read_text()
    assert table.startswith("| variant |") and "| a |" in table and "| b |" in table


def test_l2s_base_changes_reach_the_sae_it_starts_from(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    curves = load_script("learning_curves")
    # a 4 x 4 structure tensor (smoke: 32 px, 8 x 8 by default) for the SAE and the L2S alike; were only the L2S's
    # row changed, its config would not match the trained SAE's state dicts
    assert curves.main(["--family", "l2s", "--profile", "smoke", "--evals", "1", "--n-eval", "8", "--out",
                        str(tmp_path), "--base", "model.sae.structure_size=4", "--variant", "a:steps=2"]) == 0
    import torch
    sae_checkpoint = torch.load(next((tmp_path / "cache").rglob("sae-*.pt")), weights_only=True)
    assert sae_checkpoint["config"]["config"]["model"]["structure_size"] == 4


def test_bench_families_prints_and_writes_every_record(tmp_path, capsys):
    bench = load_script("bench_families")
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--families", "segmenter,mask_vae", "--widths", "4", "--batches", "2",
                       "--precisions", "fp32", "--rounds", "1", "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GEMM peak" in text and "segmenter at 32 px" in text and "mask_vae at 32 px" in text
    records = json.loads(out.read_text())["records"]
    assert [(r["family"], r["width"], r["batch"], r["layout"]) for r in records] == [
        ("segmenter", 4, 2, "nchw"), ("segmenter", 4, 2, "cl"), ("mask_vae", 4, 2, "nchw"), ("mask_vae", 4, 2, "cl")]
    assert all(r["flops"] > 0 and r["gflop_per_s"] > 0 and r["ms_per_step"] > 0 for r in records)
    table = out.with_suffix(".md").read_text()
    grid = table[table.index("````{dropdown}"):]  # every record once, after the profile rows' summary
    assert "GEMM peak" in table and grid.count("| segmenter |") == 2 and grid.count("| mask_vae |") == 2
    out.with_suffix(".md").unlink()
    assert bench.main(["--profile", "smoke", "--out", str(out), "--table-only"]) == 0
    assert out.with_suffix(".md").read_text() == table  # redrawn from the JSON alone


def test_bench_families_row_only_times_each_family_at_its_row(tmp_path, capsys):
    from helpers.config import PROFILES
    bench = load_script("bench_families")
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--families", "segmenter,features", "--row-only", "--device", "cpu",
                       "--rounds", "1", "--repeats", "1", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu"
    for record in saved["records"]:
        row = PROFILES["smoke"].family(record["family"])
        assert (record["width"], record["batch"]) == (row.width, row.batch_size)
    assert [r["family"] for r in saved["records"]] == ["segmenter", "features"]


@pytest.mark.parametrize("family, width, batch", [("flow", 16, 4), ("unsup3d", 4, 2)])
def test_bench_families_steps_the_flow_and_unsup3d_on_their_own_inputs(tmp_path, capsys, family, width, batch):
    """The flow on random W+ codes of the profile's StyleGAN2, unsup3d on generations of an untrained one."""
    bench = load_script("bench_families")
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--families", family, "--widths", str(width), "--batches", str(batch),
                       "--precisions", "fp32", "--layouts", "nchw", "--rounds", "1", "--repeats", "1",
                       "--out", str(out)]) == 0
    assert f"{family} at 32 px" in capsys.readouterr().out
    (record,) = json.loads(out.read_text())["records"]
    assert (record["family"], record["width"], record["batch"]) == (family, width, batch)
    assert record["flops"] > 0 and record["params"] > 0  # unsup3d's networks only: the frozen generator is no net


def test_bench_families_unsup3d_needs_the_stylegan_row():
    from helpers.config import PROFILES
    with pytest.raises(ValueError, match="gan_row"):
        load_script("bench_families").spec_for("unsup3d", PROFILES["smoke"].family("unsup3d"), {})


def test_bench_stylegan_times_every_phase_per_profile(tmp_path, capsys):
    bench = load_script("bench_stylegan")
    out = tmp_path / "bench.json"
    assert bench.main(["--profiles", "smoke", "--rounds", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())["records"][0]
    assert set(record["ms"]) == {"d", "r1", "g", "pl", "decorr g"}
    assert record["kimg_per_min"] > 0 and record["kimg_per_min_decorr"] > 0
    assert set(record["gflop_per_s"]) == {"d", "g", "decorr g"} and all(v > 0 for v in record["gflop_per_s"].values())
    assert "| smoke | 32 |" in out.with_suffix(".md").read_text()


def test_measure_stylegan_writes_table1_and_inversion(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    measure = load_script("measure_stylegan")
    assert measure.main(["--profile", "smoke", "--seeds", "0", "--n-ppl", "8", "--n-inversion", "4",
                         "--projector-steps", "2", "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "measures.json").read_text())
    assert [(r["variant"], r["seed"]) for r in data["table1"]] == [("plain", 0), ("decorrelated", 0)]
    assert all(r["fd_features"] >= 0 and r["ppl_w_end_features"] > 0 and 0 <= r["mean_abs_correlation"] <= 1
               for r in data["table1"])
    assert set(data["inversion"]) == {f"{kind}: {method}" for kind in ("real", "generated")
                                      for method in ("encoder", "projector (W)", "encoder + projector (W+)")}
    assert (tmp_path / "out" / "samples_plain.png").stat().st_size > 0
    assert "| decorrelated | 0 |" in (tmp_path / "out" / "measures.md").read_text()


def test_unsup3d_oracles_truth_redraws_the_render_and_fixes_the_view():
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    test = SynthFaces(resolution=32, seed=3, length=8).batch(range(8))
    truth = oracles.true_parts(test)
    turned = oracles.reconstruction_l1({**truth, "view": test["view"]}, test["image"], 10.0)
    frontal = oracles.reconstruction_l1({**truth, "view": torch.zeros(8, 6)}, test["image"], 10.0)
    assert turned < 0.6 * frontal  # the truth in unsup3d's terms draws each face in its own view
    fitted = oracles.fit_views(test, steps=100)
    assert fitted["yaw_corr"] > 0.8 and fitted["l1"] < frontal
    line = fitted["line"]  # from the fitted views (t = 0) to the true ones (t = 1)
    assert [t for t, *_ in line] == list(oracles.LINE_STEPS)
    own = oracles.per_face_l1(truth, test["view"], test["image"]).mean().item()  # the truth's mean L1 per face
    assert line[0][2] == 0 and line[-1][1] == pytest.approx(own, rel=1e-5) and own < line[0][1]
    zero = oracles.line_to_truth(test, test["view"])  # starting at the truth, the line stays there
    assert all(l1 == pytest.approx(own, rel=1e-5) == common and share == 0 for _, l1, share, common in zero)
    oracle = oracles.fit_views(test, steps=100, pixels="true view")
    windowed = oracles.fit_views(test, steps=100, pixels=3)
    assert oracle["yaw_corr"] > 0.8 and windowed["yaw_corr"] > 0.8 and oracle["yaw_std"] != fitted["yaw_std"]
    with pytest.raises(ValueError, match="pixels="):
        oracles.fit_views(test, steps=1, pixels="all")
    terms = oracles.objective_terms({**truth, "view": test["view"]}, test["image"], 10.0)
    flipped = oracles.reconstruction_l1({**truth, "view": test["view"], "depth": truth["depth"].flip(3),
                                         "albedo": truth["albedo"].flip(3)}, test["image"], 10.0)
    assert terms == {"l1": turned, "l1_flip": flipped, "objective": turned + 0.5 * flipped}
    model = unsup3d.Unsup3d(unsup3d.Unsup3dConfig(resolution=32, width=4, zdim=16))
    parts = oracles.decompose(model, test["image"], truth, ("depth", "light"))
    assert torch.equal(parts["depth"], truth["depth"]) and torch.equal(parts["light"], truth["light"])
    assert not torch.equal(parts["albedo"], truth["albedo"])


def test_unsup3d_oracles_writes_the_ladder_and_one_variant(tmp_path):
    oracles = load_script("unsup3d_oracles")
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--out", str(tmp_path / "all")]) == 0
    ladder = json.loads((tmp_path / "all" / "unsup3d_oracles.json").read_text())["variants"]
    assert list(ladder) == [oracles.TRUTH_ROW, *(name for name, _ in oracles.LADDER), *oracles.FIT_VARIANTS]
    assert [p["step"] for p in ladder["true depth"]] == [0, 2]
    assert ladder[oracles.TRUTH_ROW][0]["yaw_corr"] > 0.999  # the truth's own view
    profiles = json.loads((tmp_path / "all" / "unsup3d_oracles.json").read_text())["translation_profiles"]
    assert list(profiles) == [name for name, _ in oracles.LADDER]
    assert [shift for shift, _ in profiles["true depth"]] == list(oracles.SHIFTS_PX)
    assert "| true depth | " in (tmp_path / "all" / "unsup3d_oracles.md").read_text().split("moved sideways")[1]
    assert "| share lower | 0.00 |" in (tmp_path / "all" / "unsup3d_oracles.md").read_text()
    assert oracles.main(small + ["--given", "depth,albedo,light", "--out", str(tmp_path / "one")]) == 0
    table = (tmp_path / "one" / "unsup3d_oracles.md").read_text()
    curve_table, profile_table = table.split("moved sideways")
    assert curve_table.count("| true depth, albedo and light |") == 2  # every evaluation of the one curve
    assert profile_table.count("| true depth, albedo and light |") == 1
    with pytest.raises(SystemExit, match="unknown parts"):
        oracles.main(small + ["--given", "depth,normals", "--out", str(tmp_path / "bad")])


def test_unsup3d_oracles_translation_profile_moves_the_predicted_view_by_pixels():
    import math
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    torch.manual_seed(0)
    model = unsup3d.Unsup3d(unsup3d.Unsup3dConfig(resolution=32, width=4, zdim=16))
    test = SynthFaces(resolution=32, seed=3, length=4).batch(range(4))
    profile = oracles.translation_profile(model, test, ())
    assert [shift for shift, _ in profile] == list(oracles.SHIFTS_PX)
    with torch.no_grad():
        parts = model.decompose(test["image"])
        sigma = model.confidence(test["image"])
        pixel = 2 * math.tan(math.radians(5)) / 32
        for shift, loss in profile[::4]:  # -1, 0 and +1 pixel
            view = parts["view"].clone()
            view[:, 3] += shift * pixel
            expected, _, _ = unsup3d.symmetric_loss(parts["depth"], parts["albedo"], parts["light"], view,
                                                    test["image"], sigma, model.cfg)
            assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert profile[0][1] != profile[4][1]  # a pixel's move changes the loss


def test_unsup3d_oracles_holds_the_light_neutral_for_the_steps_asked(tmp_path):
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    model = unsup3d.Unsup3d(unsup3d.Unsup3dConfig(resolution=32, width=4, zdim=16))
    test = SynthFaces(resolution=32, seed=3, length=4).batch(range(4))
    held = oracles.decompose(model, test["image"], oracles.true_parts(test), ("depth",), neutral_light=True)
    assert torch.equal(held["light"], torch.tensor([[0.5] * 6 + [0.0, 0.0]] * 4))
    assert torch.equal(held["depth"], oracles.true_parts(test)["depth"])
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--given", "", "--neutral-light-steps", "0,2", "--out", str(tmp_path)]) == 0
    curves = json.loads((tmp_path / "unsup3d_oracles.json").read_text())["variants"]
    assert list(curves) == ["unsup3d, nothing given", "unsup3d, nothing given, light held neutral for 2 steps"]
    for bad in (["--neutral-light-steps", "300"], ["--given", "light", "--neutral-light-steps", "300"],
                ["--given", "", "--neutral-light-steps", "-1"], ["--given", "", "--neutral-light-steps", "x"]):
        with pytest.raises(SystemExit, match="neutral-light-steps"):
            oracles.main(small + bad + ["--out", str(tmp_path / "bad")])


def test_unsup3d_oracles_levers_change_the_training_they_name(tmp_path):
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    assert oracles.parse_lever("v:lr_view=10,symmetric=1") == ("v", {"lr_view": 10.0, "symmetric": 1})
    for bad in ("v", "v:lr_veiw=10", "v:lam_flip", ":lam_flip=2"):
        with pytest.raises(SystemExit, match="--lever"):
            oracles.parse_lever(bad)
    model = unsup3d.Unsup3d(unsup3d.Unsup3dConfig(resolution=32, width=4, zdim=16))
    image = SynthFaces(resolution=32, seed=3, length=2).batch(range(2))["image"]
    plain = oracles.decompose(model, image, {}, ())
    changed = oracles.decompose(model, image, {}, (), lever={"symmetric": 1, "depth_bump": 0.08})
    assert torch.allclose(changed["albedo"], changed["albedo"].flip(3))
    assert torch.allclose(changed["depth"], changed["depth"].flip(3))
    centre = changed["depth"][..., 15:17, 15:17].mean() - plain["depth"][..., 15:17, 15:17].mean()
    assert -0.09 < centre < -0.05  # the bump brings the face's centre towards the camera
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--lever", "flip 2:lam_flip=2", "--lever", "view x10:lr_view=10",
                                 "--lever", "noise:view_noise_deg=3,view_noise_px=0.5",
                                 "--lever", "fine:canonical_scale=2", "--out", str(tmp_path)]) == 0
    curves = json.loads((tmp_path / "unsup3d_oracles.json").read_text())["variants"]
    assert list(curves) == ["unsup3d, nothing given", "flip 2", "view x10", "noise", "fine"]
    assert curves["flip 2"][-1]["step"] == 2
    for bad in (["--lever", "a:lam_flip=2", "--given", "depth", "--neutral-light-steps", "1"], ["--resolution", "48"]):
        with pytest.raises(SystemExit):
            oracles.main(small + bad + ["--out", str(tmp_path / "bad")])
    assert oracles.main(small + ["--given", "depth", "--lever", "h:head_loss=1", "--out", str(tmp_path / "given")]) == 0
    given = json.loads((tmp_path / "given" / "unsup3d_oracles.json").read_text())["variants"]
    assert list(given) == ["true depth", "h"]  # the lever runs with the same part given
    assert (tmp_path / "given" / "unsup3d_oracles.md").read_text().startswith("| true depth, changed by |")


def test_unsup3d_oracles_yaw_signal_follows_the_true_yaw():
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    batch = SynthFaces(resolution=32, seed=5, length=24).batch(range(24))
    truth = oracles.true_parts(batch)
    exact = unsup3d.reconstruct(truth["depth"], truth["albedo"], truth["light"], batch["view"])["image"]
    test = {"image": exact, "view": batch["view"]}  # images the unsup3d model draws exactly
    frontal = torch.zeros_like(batch["view"])
    signal = oracles.yaw_signal(truth, frontal, test)
    assert signal > 0.3  # from the front, the gradient turns the faces towards their true yaw
    mirrored = oracles.yaw_signal(truth, frontal, {**test, "view": -batch["view"]})
    assert mirrored == pytest.approx(-signal, abs=1e-5)  # a correlation with the true yaw, nothing else
    groups = oracles.pixel_groups(batch)
    head = groups["head interior"] + groups["silhouette"] + groups["background"]
    assert torch.equal(head, torch.ones_like(head))  # the three regions split every pixel
    edges = [v for k, v in groups.items() if "edges" in k]
    assert torch.equal(edges[0] + edges[1], torch.ones_like(head))
    assert groups["silhouette"].sum() > 0 and groups["head interior"].sum() > groups["silhouette"].sum()
    table = oracles.truth_signal({**batch, "image": exact})
    assert list(table) == ["frontal view", "half the true view"] and set(table["frontal view"]) == set(groups)


def test_unsup3d_oracles_mutual_levers_swap_depth_and_albedo():
    import torch
    from helpers.data.synthfaces import SynthFaces
    from helpers.models import unsup3d
    oracles = load_script("unsup3d_oracles")
    model = unsup3d.Unsup3d(unsup3d.Unsup3dConfig(resolution=32, width=4, zdim=16, mutual=1.0))
    faces = SynthFaces(resolution=32, seed=3, length=4).batch(range(4))
    image, idx = faces["image"], torch.arange(4)
    parts = model.decompose(image)
    sigma = oracles.sigma_maps(model, image)
    assert torch.equal(oracles.sigma_maps(model, image, {"fixed_sigma": 1}), torch.ones_like(sigma))
    generator = torch.Generator().manual_seed(0)
    swapped, mutual_sigma = oracles.swap_with_partners(model, parts, sigma, image, faces, idx, {}, generator)
    assert torch.equal(swapped["depth"], parts["depth"].roll(1, 0))  # mutual = 1: always the next image's
    assert torch.equal(swapped["albedo"], parts["albedo"].roll(1, 0))
    assert torch.equal(swapped["view"], parts["view"]) and torch.equal(swapped["light"], parts["light"])
    assert torch.allclose(mutual_sigma, model.confidence(image, image.roll(1, 0)))
    twins = {**faces, "twin_image": image.flip(0)}
    swapped, _ = oracles.swap_with_partners(model, parts, sigma, image, twins, idx, {"twin_mutual": 1.0}, generator)
    assert torch.allclose(swapped["albedo"], model.decompose(image.flip(0))["albedo"])


def test_unsup3d_oracles_new_levers_run_and_score_the_yaw_signal(tmp_path):
    oracles = load_script("unsup3d_oracles")
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--lever", "nc:fixed_sigma=1", "--lever", "m:mutual=0.5",
                                 "--lever", "t:twin_mutual=0.5", "--lever", "h:head_loss=1",
                                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "unsup3d_oracles.json").read_text())
    assert list(results["variants"]) == ["unsup3d, nothing given", "nc", "m", "t", "h"]
    assert all("yaw_signal" in curve[-1] for curve in results["variants"].values())
    assert set(results["truth_signal"]) == {"frontal view", "half the true view"}
    assert "| frontal view |" in (tmp_path / "unsup3d_oracles.md").read_text()


def test_pose_linearity_scores_the_labelled_reference_at_each_evaluation(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    script = load_script("pose_linearity")
    out = tmp_path / "pose"
    assert script.main(["--profile", "smoke", "--steps", "4", "--evals", "2,4", "--device", "cpu",
                        "--out", str(out)]) == 0
    result = json.loads((out / "pose_linearity.json").read_text())
    assert [p["step"] for p in result["curve"]] == [2.0, 4.0]
    for point in result["curve"]:
        for key in ("yaw", "pitch", "largest_off_diagonal", "light_x_yaw_of_generations"):
            assert -1.0 <= point[key] <= 1.0
        assert point["largest_off_diagonal"] >= 0
    table = (out / "pose_linearity.md").read_text()
    assert table.count("\n| 2 |") + table.count("\n| 4 |") == 2 and "*>= 0.9*" in table
    real_train = script.book_models.train_model
    monkeypatch.setattr(script.book_models, "train_model",  # a GAN from the cache that was trained without evaluations
                        lambda run, family, *a, **k: real_train(run, family, *a, **{
                            key: v for key, v in k.items() if family != "stylegan" or not key.startswith("evaluate")}))
    with pytest.raises(SystemExit, match="checkpoint cache"):
        script.main(["--profile", "smoke", "--steps", "3", "--evals", "3", "--device", "cpu", "--out", str(out)])
    with pytest.raises(SystemExit):
        script.main(["--profile", "smoke", "--steps", "4", "--evals", "9", "--out", str(out)])
    assert "--evals 9" in capsys.readouterr().err


def test_unsup3d_oracles_crop_frames_the_head_and_trains_on_the_crop(tmp_path):
    import torch
    from helpers.data.synthfaces import SynthFaces
    oracles = load_script("unsup3d_oracles")
    batch = SynthFaces(resolution=32, seed=3, length=4).batch(range(4))
    framed = oracles.centre_crop(batch, 24)
    for key in ("image", "mask", "view_depth"):
        assert framed[key].shape == batch[key].shape
    assert framed["mask"].mean() > batch["mask"].mean() + 0.1  # the head fills more of the image
    assert torch.equal(oracles.centre_crop(batch, 32)["image"], batch["image"])  # keeping every pixel changes nothing
    assert torch.equal(framed["view"], batch["view"]) and torch.equal(framed["depth"], batch["depth"])
    for bad in (4, 40):
        with pytest.raises(SystemExit, match="crop="):
            oracles.centre_crop(batch, bad)
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--lever", "c:crop=24", "--out", str(tmp_path)]) == 0
    curves = json.loads((tmp_path / "unsup3d_oracles.json").read_text())["variants"]
    assert list(curves) == ["unsup3d, nothing given", "c"]
    assert curves["c"][0]["l1"] != curves["unsup3d, nothing given"][0]["l1"]  # scored on the cropped test renders
    with pytest.raises(SystemExit, match="not with --given"):
        oracles.main(small + ["--given", "depth", "--lever", "c:crop=24", "--out", str(tmp_path / "bad")])


def test_unsup3d_oracles_perceptual_lever_trains_its_feature_network_once_and_adds_the_term(tmp_path, monkeypatch):
    oracles = load_script("unsup3d_oracles")
    monkeypatch.setattr(oracles, "FEATURE_STEPS", 2)
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--lever", "p:lam_perc=1", "--out", str(tmp_path)]) == 0
    curves = json.loads((tmp_path / "unsup3d_oracles.json").read_text())["variants"]
    assert list(curves) == ["unsup3d, nothing given", "p"]
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 1  # the perceptual term's network, cached
    profiles = json.loads((tmp_path / "unsup3d_oracles.json").read_text())["translation_profiles"]
    assert profiles["p"] != profiles["unsup3d, nothing given"]  # the objective scanned includes the term


def test_unsup3d_oracles_background_layer_composites_a_static_background_behind_the_turning_head(tmp_path):
    import torch
    oracles = load_script("unsup3d_oracles")
    cfg = oracles.unsup3d.Unsup3dConfig(resolution=16, width=4, zdim=8)
    depth = torch.ones(2, 1, 16, 16)
    parts = {"depth": depth, "albedo": torch.full((2, 3, 16, 16), 0.8),
             "light": torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]).repeat(2, 1)}
    background = torch.rand(2, 3, 16, 16)
    view = torch.zeros(2, 6)
    for opacity, expected in ((torch.ones(2, 1, 16, 16), parts["albedo"]), (torch.zeros(2, 1, 16, 16), background)):
        recon, seen = oracles.layered_reconstruction(parts, opacity, background, view, cfg.fov)
        assert torch.allclose(recon, expected, atol=1e-5) and torch.allclose(seen, opacity, atol=1e-5)
    half = torch.zeros(2, 1, 16, 16)
    half[..., :, 8:] = 1  # opaque on the right half of the canonical map: a turn carries it across the image
    turned = view.clone()
    turned[:, 0] = 0.3
    assert not torch.allclose(oracles.layered_reconstruction(parts, half, background, turned, cfg.fov)[1], half)
    layer = oracles.BackgroundLayer(cfg, grid=2)
    bg, opacity = layer(torch.rand(3, 3, 16, 16))
    assert bg.shape == (3, 3, 16, 16) and opacity.shape == (3, 1, 16, 16)
    assert 0 <= bg.min() and bg.max() <= 1 and 0 < opacity.min() and opacity.max() < 1
    with pytest.raises(SystemExit, match="background_layer="):
        oracles.BackgroundLayer(cfg, grid=8)
    small = ["--steps", "2", "--evals", "1", "--width", "4", "--train", "8", "--test", "8", "--batch", "4"]
    assert oracles.main(small + ["--lever", "b:background_layer=2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "unsup3d_oracles.json").read_text())
    last = result["variants"]["b"][-1]
    assert 0 <= last["opacity_background"] <= 1 and 0 <= last["opacity_head"] <= 1
    assert result["translation_profiles"]["b"] != result["translation_profiles"]["unsup3d, nothing given"]


def test_unsup3d_oracles_saves_after_every_evaluation_so_a_stopped_run_keeps_its_curve(tmp_path, monkeypatch):
    oracles = load_script("unsup3d_oracles")

    def stopped(test, fov=10.0):  # the last thing main does before its final save: a run cut short there
        raise KeyboardInterrupt

    monkeypatch.setattr(oracles, "truth_signal", stopped)
    small = ["--steps", "2", "--evals", "2", "--width", "4", "--train", "8", "--test", "8", "--batch", "4",
             "--given", "", "--device", "cpu", "--out", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        oracles.main(small)
    saved = json.loads((tmp_path / "unsup3d_oracles.json").read_text())
    assert [point["step"] for point in saved["variants"]["unsup3d, nothing given"]] == [0, 1, 2]
    assert "| unsup3d, nothing given | 2 |" in (tmp_path / "unsup3d_oracles.md").read_text()
