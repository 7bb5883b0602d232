"""The Explainer: the whole pipeline for a batch of images, one `Explanation` per image.

invert (Eq. 2; from the encoder's E(x) when one is given) -> counterfactual G(z1, 0) -> traversal
G(z1, alpha z2) -> attribution maps -> reconstruction quality (MSE, SSIM). Pure: tensors in,
dataclasses out; the results file and the PNG artifacts are written by `raygan.explain.results`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from raygan.config import InversionConfig, TraversalConfig
from raygan.explain.attribution import (
    MAP_NAMES, PATH_MAP, SIGNED_MAPS, SWAP_MAP, difference_map, gradcam, integrated_gradients_both,
    path_attribution_both, signed_attributions, swap_attribution_both, unavailable_maps,
)
from raygan.explain.inversion import Abandoned, eval_mode, invert
from raygan.explain.traversal import traverse
from raygan.metrics.reconstruction import per_image_mse, per_image_ssim
from raygan.models.frozen import FrozenClassifier
from raygan.quality import Quality

if TYPE_CHECKING:
    from raygan.bundle import Bundle


@dataclass(frozen=True)
class Explanation:
    """Everything raygan says about one image; tensors are on the CPU, images in [-1, 1]."""

    image_id: str  # the input row's image_id
    image: torch.Tensor  # [C, S, S] the input x
    reconstruction: torch.Tensor  # [C, S, S] G(z1, z2)
    counterfactual: torch.Tensor  # [C, S, S] G(z1, 0): the same anatomy without the positive-class features
    z1: torch.Tensor  # [z1_dim] inverted structure latent
    z2: torch.Tensor  # [z2_dim] inverted class latent
    p_input: float  # p_C(positive | x)
    p_reconstruction: float  # p_C(positive | G(z1, z2))
    p_counterfactual: float  # p_C(positive | G(z1, 0))
    recon_mse: float  # mean squared error of G(z1, z2) vs x on the [-1, 1] scale
    recon_ssim: float  # SSIM of G(z1, z2) vs x (raygan.metrics.reconstruction.per_image_ssim)
    traversal_alphas: list[float]  # alpha = n * rate, n = 0..frames
    traversal_probs: list[float]  # p_C per traversal frame
    traversal_frames: torch.Tensor  # [F, C, S, S] G(z1, alpha * direction)
    monotone: bool  # traversal probabilities non-decreasing within 1e-3
    spearman: float  # Spearman rho of the probabilities against alpha
    crossing_alpha: float | None  # first alpha where p reaches 0.5; None if it never does
    maps: dict[str, torch.Tensor]  # [1, S, S] in [0, 1], keyed by MAP_NAMES ("diff" only without attributions); "diff" follows the walked direction
    steps_used: int  # inversion steps this image ran (fewer than configured when it stopped early)
    loss_curve: list[float]  # inversion loss per step run
    used_fallback: bool = False  # the traversal walked the mean positive direction (z2 was ~0)
    extras: dict[str, float] = field(default_factory=dict)  # final inversion loss and other diagnostics
    target_class: str = ""  # the class explained (name, or output index as text): p_* are p(target class)
    warning: str | None = None  # the bundle's quality-gate warning (class consistency below 0.9), None when it passes
    maps_skipped: dict[str, str] = field(default_factory=dict)  # map name -> why this classifier cannot give it
    signed: dict[str, torch.Tensor] = field(default_factory=dict)  # [1, S, S] in [-1, 1]: the signed forms of the
    # maps that have one (SIGNED_MAPS), computed with them; what the shortcut verdicts read


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Explainer:
    """Explains images with one generator, one frozen classifier and fixed settings."""

    def __init__(
        self,
        generator: nn.Module,
        classifier: FrozenClassifier,
        *,
        inversion: InversionConfig,
        traversal: TraversalConfig,
        bundle_id: str = "",
        device: torch.device | str | None = None,
        attributions: bool = True,
        quality: Quality | None = None,
        encoder: nn.Module | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else _default_device()
        self.generator = generator.to(self.device).eval()
        # E(x) -> (z1, z2): the inversion starts there (amortised) and refines inversion.encoder_steps steps.
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        self.classifier = classifier.to(self.device).eval()
        self.inversion = inversion
        self.traversal = traversal
        self.bundle_id = bundle_id
        self.attributions = attributions
        self.quality = quality if quality is not None else Quality.unmeasured()  # the bundle's quality gate
        self.warning = self.quality.warning  # said on every explanation; None when the gate passes
        # Maps this classifier cannot give (e.g. Grad-CAM on TorchScript): skipped, with the reason.
        self.maps_skipped = unavailable_maps(self.classifier) if attributions else {}

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        inversion: InversionConfig | None = None,
        traversal: TraversalConfig | None = None,
        device: torch.device | str | None = None,
        attributions: bool = True,
        no_encoder: bool = False,
    ) -> Explainer:
        """An Explainer with the bundle's models; settings default to the bundle's (tuned) ones.

        The inversion starts from the bundle's encoder when it has one; `no_encoder` keeps the
        optimisation from scratch (and its own bundle_id).
        """
        inversion = inversion if inversion is not None else bundle.inversion
        traversal = traversal if traversal is not None else bundle.traversal
        encoder = None if no_encoder else bundle.encoder
        return cls(
            bundle.generator, bundle.classifier, inversion=inversion, traversal=traversal,
            bundle_id=bundle.bundle_id(inversion, traversal, encoder=encoder is not None), device=device,
            attributions=attributions, quality=bundle.quality, encoder=encoder,
        )

    @property
    def image_size(self) -> int:
        """Side of the square images the generator makes (and `explain` expects)."""
        return int(self.generator.config.image_size)  # type: ignore[attr-defined]

    @property
    def channels(self) -> int:
        """Channels of the generator's images."""
        return int(self.generator.config.channels)  # type: ignore[attr-defined]

    def explain(self, images: torch.Tensor, *, image_ids: list[str],
                should_stop: Callable[[], bool] | None = None) -> list[Explanation]:
        """One Explanation per image of `images` ([N, C, S, S] in [-1, 1] at the generator's size).

        `should_stop()`, asked before every inversion step and before the maps, True -> `Abandoned` is raised
        (the service asks it when every request of a batch has given up)."""
        assert images.ndim == 4 and tuple(images.shape[1:]) == (self.channels, self.image_size, self.image_size), (
            images.shape, self.channels, self.image_size)  # [N, C, S, S]
        if len(image_ids) != images.shape[0]:
            raise ValueError(f"got {len(image_ids)} image_ids for {images.shape[0]} images")
        if images.shape[0] == 0:
            return []
        g, c = self.generator, self.classifier
        x = images.to(self.device, torch.float32)
        inv = invert(g, c, x, config=self.inversion, keys=image_ids, encoder=self.encoder, should_stop=should_stop)
        with torch.no_grad(), eval_mode(g, c):
            p_input = c.p_positive(x)
            recon = g(inv.z1, inv.z2)  # [N, C, S, S]
            counterfactual = g(inv.z1, torch.zeros_like(inv.z2))  # [N, C, S, S]
            p_recon = c.p_positive(recon)
            p_cf = c.p_positive(counterfactual)
            mse = per_image_mse(recon, x)
            ssim = per_image_ssim(recon, x)  # on [0, 1]: SSIM's luminance term needs non-negative data
        trav = traverse(g, c, inv.z1, inv.z2, config=self.traversal)
        # The map shows what the traversal walks: G(z1, z2) - G(z1, 0) along the image's own z2, and
        # G(z1, d) - G(z1, 0) along the mean positive direction d where the traversal fell back to it
        # (there z2 ~ 0, so the reconstruction and the counterfactual barely differ).
        walked_end = recon
        if bool(trav.used_fallback.any()):
            with torch.no_grad(), eval_mode(g):
                fallback = trav.used_fallback.to(self.device)
                ends = g(inv.z1, trav.direction.to(self.device, inv.z2.dtype))
            walked_end = torch.where(fallback[:, None, None, None], ends, recon)
        maps = {"diff": difference_map(walked_end, counterfactual)}
        if self.attributions and should_stop is not None and should_stop():
            raise Abandoned("stopped before the attribution maps: nobody waits for the result")
        signed = {}  # the signed forms come out of the same computations as the maps
        if self.attributions:
            if "gradcam" not in self.maps_skipped:
                maps["gradcam"] = gradcam(c, x)
            if "ig" not in self.maps_skipped:
                maps["ig"], signed["ig"] = integrated_gradients_both(c, x)
            # Input gradients along the traversal only: every classifier allows it (TorchScript, no captum).
            maps[PATH_MAP], signed[PATH_MAP] = path_attribution_both(c, trav.frames.to(self.device))
            # Forward passes only, with the counterfactual as what replaces each window.
            maps[SWAP_MAP], signed[SWAP_MAP] = swap_attribution_both(c, x, counterfactual)
        # One device-to-host copy per tensor, not one per image and field.
        cpu = {k: v.detach().cpu() for k, v in maps.items()}
        cpu_signed = {k: v.detach().cpu() for k, v in signed.items()}
        recon, counterfactual = recon.float().cpu(), counterfactual.float().cpu()
        z1, z2, steps_used = inv.z1.cpu(), inv.z2.cpu(), inv.steps_used.cpu().tolist()
        curves, final_loss = inv.loss_curve.cpu(), inv.final_loss.cpu().tolist()  # curves [N, T], nan after a stop
        p_input, p_recon, p_cf = p_input.cpu().tolist(), p_recon.cpu().tolist(), p_cf.cpu().tolist()
        mse, ssim = mse.cpu().tolist(), ssim.cpu().tolist()
        out = []
        for i, image_id in enumerate(image_ids):
            crossing = float(trav.crossing_alpha[i])
            out.append(Explanation(
                image_id=image_id,
                image=images[i].detach().cpu().float(),
                reconstruction=recon[i],
                counterfactual=counterfactual[i],
                z1=z1[i],
                z2=z2[i],
                p_input=p_input[i],
                p_reconstruction=p_recon[i],
                p_counterfactual=p_cf[i],
                recon_mse=mse[i],
                recon_ssim=ssim[i],
                traversal_alphas=trav.alphas.tolist(),
                traversal_probs=trav.probs[i].tolist(),
                traversal_frames=trav.frames[i],
                monotone=bool(trav.monotone[i]),
                spearman=float(trav.spearman[i]),
                crossing_alpha=None if math.isnan(crossing) else crossing,
                maps={k: v[i] for k, v in cpu.items()},
                steps_used=int(steps_used[i]),
                loss_curve=[v for v in curves[i].tolist() if not math.isnan(v)],
                used_fallback=bool(trav.used_fallback[i]),
                extras={"final_loss": final_loss[i]},
                target_class=c.target_name,
                warning=self.warning,
                maps_skipped=dict(self.maps_skipped),
                signed={k: v[i] for k, v in cpu_signed.items()},
            ))
        return out


def signed_maps(classifier: FrozenClassifier, explanations: Sequence[Explanation], *,
                names: Sequence[str] = SIGNED_MAPS) -> dict[str, torch.Tensor]:
    """The signed forms of `explanations`' maps in `names` ([N, 1, S, S] in [-1, 1], on the CPU): those the
    Explainer kept (`Explanation.signed`), else `signed_attributions` of them (the swap map from their
    counterfactuals, the traversal attribution from their frames, IG where they have an IG map). The maps
    shown stay the non-negative ones."""
    kept = [n for n in names if all(n in e.signed for e in explanations)]
    out = {n: torch.stack([e.signed[n] for e in explanations]) for n in kept}
    names = [n for n in names if n not in kept]
    if not names:
        return out
    images = torch.stack([e.image for e in explanations])  # [N, C, S, S]
    return out | signed_attributions(
        classifier, images,
        counterfactuals=torch.stack([e.counterfactual for e in explanations]) if SWAP_MAP in names else None,
        frames=torch.stack([e.traversal_frames for e in explanations]) if PATH_MAP in names else None,
        ig="ig" in names and "ig" in explanations[0].maps)


__all__ = ["Explainer", "Explanation", "MAP_NAMES", "SIGNED_MAPS", "signed_maps"]
