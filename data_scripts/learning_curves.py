"""Learning curves against wall-clock seconds: held-out quality of a model family while it trains, per setting.

Each variant is the book's own training spec (`helpers.book_models.book_spec`) with a profile row changed (width,
batch, steps, lr, warm-up, decay, EMA) and/or model settings changed; the training loop evaluates the networks it
would return (the weight average, where there is one) on held-out SynthFaces at `--evals` points, with the clock
stopped while it evaluates. The curves are merged into `<out>/<family>.json`, drawn into `<out>/<family>.png` and
tabulated in `<out>/<family>.md`: the measurements behind every `cpu` row of `helpers.config.PROFILES`, shown in
book/training.md.

Held-out quality per family: mask_vae test mIoU, the smallest class IoU and chapter 1's interpolation measure (mean
Spearman rho of a part's area and centroid along Eq. 4, 32 pairs of test masks: `mask_vae.interpolation_monotonicity`);
sis test L1; sae test L1, with the L1 and the sharpness (gradient energy against the original's:
`metrics.sharpness_ratio`) over the eyes, brows, lips and mouth; l2s mean F1 over the ROIs (consistency rule), the
smallest ROI F1, the ACS (32 faces x 4 noise draws, a quicker estimate than the chapter's) and chapter 3's
edit_localised measure with the model as its SMPN (`edit_share`, with the masks' IoU); segmenter mean
and smallest ROI F1; features attribute accuracy; stylegan the Fréchet distance between held-out real faces and samples
of the averaged generator in the book's attribute-feature space (`helpers.models.features`, trained at the GAN's
resolution and cached; NOT the FID), with the real-vs-real floor of that distance; w_encoder (the W+ encoder of the
profile's StyleGAN2) the feature distance and pixel MSE between held-out real faces and their reconstructions G(E(x)),
and the W+ recovery error on generated faces (MSE relative to the codes' spread); semantics (the supervised pose/light
regressor) the mean absolute yaw and pitch errors in degrees; unsup3d (trained on generations of the profile's
decorrelated StyleGAN2) the scale-invariant depth error (SIDE) and mean angle deviation (MAD, degrees) of its view depth
on held-out SynthFaces renders, and the correlation of its yaw and pitch with the true ones; flow (chapter 05's T: W+ ->
W*, on W+ codes of unseen SynthFaces from the profile's encoder, against the linear classifiers it trains with) the
accuracy of fresh linear SVMs on T(w) of held-out codes (80/20 of `--n-codes` validation codes: mean and smallest over
the attributes) and the frozen classifiers' accuracy on them.

    python data_scripts/learning_curves.py --family sae --variant "w8b16:width=8,batch=16,steps=600,ema=2000"
    python data_scripts/learning_curves.py --family l2s --variant "regions:steps=300,model.l1_weights=region_balanced"
    python data_scripts/learning_curves.py --family mask_vae --variant "eq1:weights=eq1" --variant "isqrt:weights=inverse_sqrt"
    python data_scripts/learning_curves.py --family stylegan --variant "w128:width=128,steps=600"
    python data_scripts/learning_curves.py --family unsup3d --variant "w32:width=32,steps=800,lr=5e-4"
    python data_scripts/learning_curves.py --family flow --variant "paper:steps=4000" --variant "b64 lr1e-3:batch=64,lr=1e-3"
    python data_scripts/learning_curves.py --family sae --plot-only

Run one at a time on an otherwise idle machine: the seconds are the measurement.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
from pathlib import Path

import torch

from helpers import book_models, config, metrics
from helpers import style_edit as se
from helpers.data.labels import ROI_NAMES
from helpers.data.splits import helen_label_splits
from helpers.data.transforms import ToROI
from helpers.inference import in_chunks
from helpers.models import features as ft
from helpers.models import flow, inversion, l2s, sae, segmenter, semantics, sis, stylegan, unsup3d
from helpers.models import mask_vae as mv
from helpers.train import train

FAMILIES = ("mask_vae", "sis", "sae", "l2s", "segmenter", "features", "stylegan", "w_encoder", "semantics", "unsup3d",
            "flow")
ROW_FIELDS = {f.name for f in dataclasses.fields(config.Family)}
VARIANT_OPTIONS = {"grid", "weights"}  # mask_vae: the part codes' grid and the class weights of Eq. 1
# the other held-out measures, in the order of the tables' columns; the figures draw a panel for each but TABLE_ONLY
SECONDARY = ("min_iou", "rho_mean", "min_f1", "acs", "black_roi_share", "edit_share", "mask_iou", "pixel_mse",
             "w_recovery", "pitch_mae", "mad", "yaw_corr", "pitch_corr", "min_accuracy", "frozen_accuracy",
             "eyes_mouth_l1", "eyes_mouth_sharpness")
TABLE_ONLY = ("black_roi_share", "mask_iou", "pixel_mse", "pitch_corr")
METRIC = {"mask_vae": "miou", "sis": "l1", "sae": "l1", "l2s": "mean_f1", "segmenter": "mean_f1",
          "features": "accuracy", "stylegan": "fd_features", "w_encoder": "feature_distance", "semantics": "yaw_mae",
          "unsup3d": "side", "flow": "mean_accuracy"}
BASE_ALSO = {"l2s": ("sae",)}  # families whose --base changes also apply to the rows they start from
KEYS = {"semantics": ("image", "view", "light"),
        "unsup3d": ("image", "view", "light", "view_depth", "mask", "attributes")}  # attributes: the perceptual net


def parse_variant(text: str) -> tuple[str, dict, dict, dict]:
    """'name:key=value,...' -> (name, row changes, model changes ('model.' keys), other options)."""
    name, _, body = text.partition(":")
    row, model, options = {}, {}, {}
    for item in filter(None, body.split(",")):
        key, equals, raw = item.partition("=")
        if not equals or not key.strip() or key != key.strip():
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value (the name ends at the first ':', "
                             "so a name may not contain ':')")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        if key.startswith("model."):
            model[key[6:]] = value
        elif key in ROW_FIELDS:
            row[key] = value
        elif key == "batch":
            row["batch_size"] = value
        elif key in VARIANT_OPTIONS:
            options[key] = value
        else:
            raise ValueError(f"--variant {text!r}: unknown key {key!r}; allowed: the row's fields {sorted(ROW_FIELDS)}, "
                             f"batch, model.<field> and {sorted(VARIANT_OPTIONS)}")
    return name, row, model, options


def run_for(base: config.RunConfig, family: str, row_changes: dict,
            model_changes: dict | None = None) -> config.RunConfig:
    profile = base.profile
    row = dataclasses.replace(profile.family(family), **row_changes)
    if model_changes:
        row = dataclasses.replace(row, model={**row.model, **model_changes})
    profile = dataclasses.replace(profile, families={**profile.families, family: row})
    return dataclasses.replace(base, profile=profile)


def replace_model(cfg, changes: dict):
    """A model config with `changes` applied (nested 'sae.' keys reach an L2S config's SAE)."""
    nested = {k[4:]: v for k, v in changes.items() if k.startswith("sae.")}
    flat = {k: v for k, v in changes.items() if not k.startswith("sae.")}
    if nested:
        flat["sae"] = dataclasses.replace(cfg.sae, **nested)
    return dataclasses.replace(cfg, **flat)


class Family:
    """Data, training options and held-out evaluation of one family."""

    def __init__(self, family: str, run: config.RunConfig, n_eval: int):
        self.family, self.run = family, run
        res = run.profile.family(family).resolution
        self.train, self.test = helen_label_splits("synthfaces", None, res, run.profile.train_size,
                                                   run.profile.test_size, run.seed,
                                                   keys=KEYS.get(family, ("image", "labels", "attributes")))
        self.test = {k: v[:n_eval] for k, v in self.test.items()}
        self.num_classes = 11
        self.sae = None
        self.feature_net = self.real_features = self.features_trained = self.gan = None
        self.classifiers = self.validation_codes = None
        self.edit_fixed = None  # l2s: what chapter 3's edit measure holds fixed along a curve (edit_fixtures)

    def options(self, run: config.RunConfig, model: dict, extra: dict) -> dict:
        row = run.profile.family(self.family)
        if self.family == "mask_vae":
            grid = extra.get("grid", 16 if row.resolution >= 128 else 8)
            cfg = replace_model(mv.scaled_config(self.num_classes, row.resolution, row.width, grid=grid), model)
            counts = metrics.class_pixel_counts([self.train["labels"]], self.num_classes)
            weights = mv.class_weights(metrics.class_frequencies(counts), extra.get("weights", "eq1"))
            return {"config": cfg, "class_weights": weights}
        if self.family == "sis":
            return {"config": replace_model(sis.SISConfig(num_classes=self.num_classes, resolution=row.resolution,
                                                          width=row.width, n_blocks=1), model)}
        if self.family == "l2s":
            return {"sae": self.sae, "config": replace_model(l2s.book_config(run), model)}
        if self.family == "sae":
            return {"config": replace_model(sae.book_config(row), model)}
        if self.family == "stylegan":
            return {"config": replace_model(stylegan.book_config(row), model)}
        if self.family == "w_encoder":
            cfg = replace_model(inversion.config_for(self.gan.nets["G"], row.width, **row.model), model)
            return {"generator": self.gan, "features": self.features_trained, "config": cfg}
        if self.family == "unsup3d":
            cfg = unsup3d.book_config(row, **model)
            return {"generator": self.gan, "config": cfg, "features": self.features_trained if cfg.lam_perc else None}
        if self.family == "semantics":
            return {}
        if self.family == "flow":
            dim = self.train["code"].shape[1]
            return {"classifiers": self.classifiers,
                    "config": flow.FlowConfig(dim=dim, hidden=row.width, **{**row.model, **model})}
        module = {"segmenter": segmenter, "features": ft}[self.family]
        return {"config": replace_model(module.scaled_config(row.resolution, row.width), {**row.model, **model})}

    def evaluate(self, nets) -> dict[str, float]:
        device = self.run.device
        image = self.test["image"]
        if self.family == "mask_vae":
            vae = nets["vae"]
            labels = self.test["labels"]
            predicted = in_chunks(lambda m: mv.to_labels(vae(mv.one_hot_parts(m, self.num_classes),
                                                             sample=False)["logits"]), labels, device=device)
            iou = metrics.iou_per_class(metrics.confusion_matrix(predicted, labels, self.num_classes))
            pairs = min(len(labels) // 2, 32)  # chapter 1's interpolation measure: 32 pairs of test masks
            rho = mv.interpolation_monotonicity(vae, labels[:pairs], labels[pairs:2 * pairs])
            return {"miou": iou.nanmean().item(), "min_iou": iou.min().item(), "rho_mean": rho["mean"],
                    "rho_area": rho["area"], "rho_centroid": rho["centroid"]}
        if self.family == "sis":
            out = in_chunks(lambda x, y: nets["sis"](x, y), image, self.test["labels"], device=device)
            return {"l1": (out - image).abs().mean().item()}
        if self.family == "sae":
            rec = in_chunks(nets["sae"], image, device=device)
            roi = ToROI(images=False)(self.test)["roi_labels"]  # 0 background, i + 1 = ROI_NAMES[i]
            parts = (roi == ROI_NAMES.index("eyes") + 1) | (roi == ROI_NAMES.index("lips_mouth") + 1)
            return {"l1": (rec - image).abs().mean().item(), "eyes_mouth_l1": metrics.region_l1(rec, image, parts),
                    "eyes_mouth_sharpness": metrics.sharpness_ratio(rec, image, parts)}
        if self.family == "segmenter":
            truth = ToROI(images=False)(self.test)["roi_labels"]
            predicted = in_chunks(lambda x: nets["segmenter"](x).argmax(1), image, device=device)
            f1 = metrics.f1_per_class(metrics.confusion_matrix(predicted, truth, 6))[1:]
            return {"mean_f1": f1.nanmean().item(), "min_f1": f1.min().item()}
        if self.family == "features":
            logits = in_chunks(nets["features"], image, device=device)
            return {"accuracy": ((logits > 0).float() == self.test["attributes"].float()).float().mean().item()}
        if self.family == "stylegan":
            return {"fd_features": self.fd_features(nets["G"])}
        if self.family == "w_encoder":
            return self.evaluate_encoder(nets["encoder"])
        if self.family == "semantics":
            predicted = in_chunks(nets["semantics"], image, device=device)
            error = (predicted - semantics.true_semantics(self.test["view"], self.test["light"])).abs().mean(0)
            return {"yaw_mae": error[0].item(), "pitch_mae": error[1].item()}
        if self.family == "unsup3d":
            out = unsup3d.scores(nets["unsup3d"].to(device), self.test)
            return {k: out[k] for k in ("side", "mad", "yaw_corr", "pitch_corr")}
        if self.family == "flow":
            return self.evaluate_flow(nets["flow"])
        return self.evaluate_l2s(nets["sae"])

    def with_codes(self, base: config.RunConfig, n_train: int, n_validation: int) -> str:
        """Chapter 05's data: W+ codes of unseen faces from the profile's encoder; the classifiers trained on them."""
        self.with_feature_net(base)
        gan_row = base.profile.family("stylegan")
        self.gan = book_models.train_model(base, "stylegan", self.train,
                                           config=dataclasses.replace(stylegan.book_config(gan_row), decorrelation=0.0))
        encoder = book_models.train_model(base, "w_encoder", self.train, generator=self.gan,
                                          features=self.features_trained)
        codes = inversion.labelled_codes(encoder.nets["encoder"], gan_row.resolution,
                                         {"train": n_train, "validation": n_validation},
                                         base.profile.train_size + base.profile.test_size, base.seed, base.device)
        self.train, self.validation_codes = codes["train"], codes["validation"]
        self.classifiers = book_models.train_model(base, "classifier", self.train, encoder=encoder)
        return f"{encoder.summary}; {self.classifiers.summary}"

    def evaluate_flow(self, flow) -> dict[str, float]:
        codes, attributes = self.validation_codes["code"], self.validation_codes["attributes"]
        with torch.no_grad():
            w_star = in_chunks(flow, codes, size=1024, device=next(flow.parameters()).device)
            frozen = ((self.classifiers.nets["classifier"](w_star) > 0).long() == attributes).float().mean()
        accuracy = torch.tensor(metrics.linear_separability(w_star, attributes)["accuracy"])
        return {"mean_accuracy": accuracy.mean().item(), "min_accuracy": accuracy.min().item(),
                "frozen_accuracy": frozen.item()}

    def with_feature_net(self, base: config.RunConfig) -> str:
        """Train (or load) the feature network at the GAN's resolution; features of the held-out reals; the floor."""
        res = self.run.profile.family(self.family).resolution
        trained = book_models.train_model(run_for(base, "features", {"resolution": res}), "features", self.train)
        self.features_trained, self.feature_net = trained, trained.nets["features"]
        self.real_features = in_chunks(self.feature_net.features, self.test["image"], device=self.run.device)
        floor = metrics.feature_frechet_distance(
            self.real_features, in_chunks(self.feature_net.features, self.train["image"][:len(self.test["image"])],
                                          device=self.run.device))
        return f"{trained.summary}; real-vs-real floor of the feature-space Fréchet distance: {floor:.3f}"

    def fd_features(self, G) -> float:
        """Fréchet distance, in the feature network's space, of as many G samples (const noise) as held-out reals."""
        z = torch.randn(len(self.test["image"]), G.cfg.z_dim, generator=torch.Generator().manual_seed(123))
        fakes = in_chunks(lambda z: G(z, noise_mode="const"), z, device=self.run.device)
        return metrics.feature_frechet_distance(
            self.real_features, in_chunks(self.feature_net.features, fakes, device=self.run.device))

    def evaluate_encoder(self, encoder) -> dict[str, float]:
        """Reconstruction of held-out real faces through G(E(x)), W+ recovery on 256 generated faces (fixed seed)."""
        G, device = self.gan.nets["G"].to(self.run.device), self.run.device
        image = self.test["image"]
        out = in_chunks(lambda x: G.synthesis(encoder(x), noise_mode="const"), image, device=device)
        distance = in_chunks(lambda x, y: inversion.feature_distance(self.feature_net.features, x, y), out, image,
                             device=device)
        torch.manual_seed(5)
        true_ws = stylegan.sample_ws(G, 256, G.cfg.style_mixing, torch.device(device))
        found = in_chunks(lambda w: encoder(G.synthesis(w, noise_mode="const")), true_ws, device=device)
        spread = (true_ws.cpu() - G.w_avg.cpu()).square().mean()
        return {"feature_distance": distance.mean().item(),
                "pixel_mse": (out - image).square().mean().item(),
                "w_recovery": ((found - true_ws.cpu()).square().mean() / spread).item()}

    def evaluate_l2s(self, model) -> dict[str, float]:
        cfg = l2s.book_config(self.run)
        image, k = self.test["image"], len(cfg.slices)
        truth = l2s.roi_targets(ToROI(cfg.roi_names, images=False)(self.test)["roi_labels"], cfg)
        decoded = in_chunks(lambda x: l2s.roi_images(model, x, cfg), image, device=self.run.device)
        f1 = metrics.f1_per_class(metrics.confusion_matrix(l2s.segment(decoded, image), truth, k + 1))[1:]
        faces = image[:32].to(self.run.device)
        regions = torch.stack([truth[:32] == i + 1 for i in range(k)], 1).to(self.run.device)
        structure, texture = model.encode(faces)
        activeness = metrics.activeness_map(model.decode, structure, texture, cfg.channel_lists, regions,
                                            n_noise=4, max_batch=256,
                                            generator=torch.Generator(self.run.device).manual_seed(1))
        black = (decoded.abs().amax(dim=(2, 3, 4)) < 0.05).float().mean(0)  # share of faces whose ROI i decodes black
        return {"mean_f1": f1.nanmean().item(), "min_f1": f1.min().item(),
                "acs": metrics.activeness_compaction_score(activeness.cpu()), "black_roi_share": black.max().item(),
                **self.evaluate_edits(model, cfg, decoded, truth)}

    @torch.no_grad()
    def evaluate_edits(self, model, cfg, decoded, truth) -> dict[str, float]:
        """Chapter 3's edit_localised measure with this L2S as the SMPN: the share of a localised style edit's change
        inside the true ROI (mean over ROIs), masks by the consistency rule with margins calibrated on 256 training
        faces, texture noise at c = 1, one draw, Algorithm 2's kernel scaled to the resolution; and the masks' IoU."""
        if self.edit_fixed is None:  # what does not depend on the L2S: the SMN's global edits, the calibration faces
            self.edit_fixed = self.edit_fixtures(cfg)
        picked, picked_truth, edits, blurred = self.edit_fixed
        device, image = self.run.device, self.test["image"]
        picked_decoded = in_chunks(lambda x: l2s.roi_images(model, x, cfg), picked, size=8, device=device)
        margin = l2s.fit_margins(picked_decoded, picked, picked_truth)
        masks = se.masks_from_decodes(decoded, image, rule="consistency", margin=margin)  # [N, K, H, W]
        regions = torch.stack([truth == i + 1 for i in range(len(cfg.slices))], 1)
        edited = se.alpha_matting(image[:, None], edits[:, None], masks, scale=se.matte_scale(image.shape[-1]))
        share = metrics.change_inside_share(blurred[:, None], edited, regions)  # [N, K]
        mask_iou = [metrics.iou_per_class(metrics.confusion_matrix(masks[:, i].long(), regions[:, i].long(), 2))[1]
                    for i in range(len(cfg.slices))]
        return {"edit_share": share.nanmean(0).nanmean().item(), "mask_iou": torch.stack(mask_iou).nanmean().item()}

    def edit_fixtures(self, cfg) -> tuple[torch.Tensor, ...]:
        """The calibration faces and their ROI ids, the SMN's global edits of the test faces (chapter 3's texture noise
        at c = 1, its first draw) and the blurred test faces: fixed along an L2S curve."""
        device, image = self.run.device, self.test["image"]
        smn = self.sae.nets["sae"]
        textures = in_chunks(lambda x: smn.encode(x)[1], self.train["image"][:1024], device=device)
        draw = torch.randn(1, textures.shape[1], generator=torch.Generator().manual_seed(self.run.seed + 1))
        basis, mu = se.texture_noise_basis(textures), 1.0 / math.sqrt(textures.shape[1])
        edits = in_chunks(lambda x: se.global_style_edit(smn, x, mu, noise=draw, noise_basis=basis)[:, 0], image,
                          size=16, device=device)
        picked = ToROI(cfg.roi_names)({key: self.train[key][:256] for key in ("image", "labels")})
        return (picked["image"], l2s.roi_targets(picked["roi_labels"], cfg), edits,
                se.blur3(image, se.matte_scale(image.shape[-1])))


def plot(path: Path, family: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    names = [k for k in data["variants"] if data["variants"][k]["curve"].get(METRIC[family])]
    extra = [m for m in SECONDARY if m not in TABLE_ONLY and any(m in data["variants"][n]["curve"] for n in names)]
    fig, axes = plt.subplots(1, 1 + len(extra), figsize=(5.2 * (1 + len(extra)), 3.6), squeeze=False)
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors  # one colour per variant
    for ax, metric in zip(axes[0], [METRIC[family], *extra]):
        for i, name in enumerate(names):
            curve = data["variants"][name]["curve"]
            if metric in curve:
                ax.plot(curve["seconds"], curve[metric], marker="o", ms=3, label=name, color=palette[i % len(palette)])
        ax.set_xlabel("training wall-clock seconds (2 CPU cores)")
        ax.set_ylabel(f"held-out {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{family}: held-out quality against CPU seconds ({data.get('threads', '?')} threads)")
    fig.tight_layout()
    if len(names) > 4:  # a long legend goes under the panels instead of over the first one's curves
        rows = math.ceil(len(names) / 3)
        fig.set_figheight(3.6 + 0.22 * rows)
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.22 * rows / (3.6 + 0.22 * rows) + 0.02, 1, 1))
    else:
        axes[0][0].legend(fontsize=7)
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110, bbox_inches="tight")  # a wide legend row stays inside the image
    plt.close(fig)
    path.with_suffix(".md").write_text(table(data, family))
    return out


def table(data: dict, family: str) -> str:
    """A Markdown table of the variants: training seconds and held-out quality at their last evaluation."""
    metrics_shown = [METRIC[family]] + [m for m in SECONDARY
                                        if any(m in v["curve"] for v in data["variants"].values())]
    lines = ["| variant | trained as | seconds | " + " | ".join(metrics_shown) + " |",
             "|---|---|---|" + "---|" * len(metrics_shown)]
    for name, variant in data["variants"].items():
        curve = variant["curve"]
        trained_as = variant["summary"].split(", ", 1)[1].rsplit(", trained in", 1)[0]  # drop name, size, time
        cells = [f"{curve[m][-1]:.3f}" if m in curve else "" for m in metrics_shown]
        lines.append(f"| {name} | {trained_as} | {curve['seconds'][-1]:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--variant", action="append", default=[], help="'name:key=value,...' (see the doc)")
    parser.add_argument("--profile", default="cpu", choices=list(config.PROFILES))
    parser.add_argument("--base", default="",
                        help="'key=value,...' changes to the family's profile row before the data are rendered (e.g. "
                             "resolution=32: data, evaluation and variants; for l2s also the SAE's row, and "
                             "model.sae.<field> its model)")
    parser.add_argument("--evals", type=int, default=6, help="evaluations per variant (spread evenly over its steps)")
    parser.add_argument("--n-eval", type=int, default=256, help="held-out faces or masks per evaluation")
    parser.add_argument("--n-codes", default="20000,2000", help="flow: training and validation W+ codes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="book/figures/curves")
    parser.add_argument("--cache-dir", default=None, help="checkpoint cache (default: the book's)")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.out) / f"{args.family}.json"
    if args.plot_only:
        print("figure:", plot(path, args.family))
        return 0
    variants = [parse_variant(text) for text in args.variant]  # (name, row, model, extra): bad text fails early
    base = config.validate(profile=args.profile, seed=args.seed, out_dir=args.out)
    if args.base:  # the L2S fine-tunes an SAE of its own resolution and width: the base row reaches both
        _, row_changes, model_changes, _ = parse_variant("base:" + args.base)
        also = BASE_ALSO.get(args.family, ())
        sae_changes = {k[4:]: v for k, v in model_changes.items() if also and k.startswith("sae.")}
        own = {k: v for k, v in model_changes.items() if not (also and k.startswith("sae."))}
        base = run_for(base, args.family, row_changes, own)
        for name in also:  # "model.sae.<field>" changes the model of the SAE row the L2S starts from
            base = run_for(base, name, row_changes, sae_changes)
    family = Family(args.family, base, args.n_eval)
    if args.family == "l2s":
        family.sae = book_models.train_model(base, "sae", family.train)
        print(family.sae.summary)
    if args.family in ("stylegan", "w_encoder"):
        data_note = family.with_feature_net(base)
        print(data_note)
    if args.family == "w_encoder":
        family.gan = book_models.train_model(base, "stylegan", family.train)
        print(family.gan.summary)
    if args.family == "flow":
        data_note = family.with_codes(base, *(int(n) for n in args.n_codes.split(",")))
        print(data_note)
    if args.family == "unsup3d":  # chapter 04's generator: the decorrelated StyleGAN2 of the profile, on its data
        gan_train = helen_label_splits("synthfaces", None, base.profile.family("stylegan").resolution,
                                       base.profile.train_size, base.profile.test_size, base.seed)[0]
        decorrelated = dataclasses.replace(stylegan.book_config(base.profile.family("stylegan")), decorrelation=1.0)
        family.gan = book_models.train_model(base, "stylegan", gan_train, config=decorrelated)
        print(family.gan.summary)
        if unsup3d.book_config(base.profile.family("unsup3d")).lam_perc or any(
                model.get("lam_perc") for _, _, model, _ in variants):
            print(family.with_feature_net(base))  # the perceptual term's network, at unsup3d's resolution
    data = json.loads(path.read_text()) if path.exists() else {"family": args.family, "variants": {}}
    data.update(threads=torch.get_num_threads(), torch=torch.__version__, profile=args.profile)

    for name, row, model, extra in variants:
        run = run_for(base, args.family, row)
        spec = book_models.book_spec(run, args.family, family.train, **family.options(run, model, extra))
        spec.evaluate = family.evaluate
        spec.evaluate_at = sorted({0, *(math.ceil(spec.steps * (i + 1) / args.evals) for i in range(args.evals))})
        trained = train(spec, device=run.device, retrain=True, cache_dir=args.cache_dir)
        data["variants"][name] = {"row": dataclasses.asdict(run.profile.family(args.family)), "model": model,
                                  "options": extra, "summary": trained.summary, "curve": trained.curve}
        if args.family in ("stylegan", "w_encoder", "flow"):  # the feature network and floor; the flow's codes
            data["variants"][name]["feature_net"] = data_note
        last = {k: round(v[-1], 4) for k, v in trained.curve.items()}
        print(f"{name}: {trained.summary}; last evaluation {last}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    print("curves:", path, "figure:", plot(path, args.family))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
