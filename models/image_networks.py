"""Convolutional networks for jet images (``adhunt.images``): an autoencoder / VAE and a classifier.

Inputs are batches of single-jet images ``[N, 1, S, S]`` normalised to unit sum (what
``adhunt features --images`` writes; ``adhunt.tables.read_images`` gives ``[N, 2, S, S]``, one
channel per jet). Inside, the networks multiply the pixels by S^2 so that the mean pixel is 1
(unit-sum pixels are ~1e-3: too small for well-conditioned activations); the reconstruction is
returned in input units.

The autoencoder returns the same ``(reconstruction, mu, logvar)`` triple as the dense networks of
the ``ae``/``vae`` methods, ``mu``/``logvar`` None for a plain autoencoder, so both kinds plug into
the same loss and scoring code: :func:`image_losses` gives per-sample reconstruction MSE, KL and
their combination, each usable as a per-jet anomaly score.

Torch only: nothing here knows about coffea or the feature tables.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IMAGE_SCORE_BATCH", "ConvAutoencoder", "ConvClassifier", "image_losses"]

#: Most images per forward pass when scoring or validating: the feature networks' 65536-row
#: batches would hold ~4 GB of activations per convolution layer at S = 32.
IMAGE_SCORE_BATCH = 2048


def _check_size(image_size: int) -> None:
    if image_size < 8 or image_size % 4:
        raise ValueError(
            f"image_size must be a multiple of 4 and >= 8 (two stride-2 stages), got {image_size}"
        )


def _check_input(x: torch.Tensor, channels: int, image_size: int, what: str) -> None:
    expected = (channels, image_size, image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{what} expects images [N, {', '.join(map(str, expected))}], got {list(x.shape)}"
        )


def _encoder(in_channels: int, channels: tuple[int, int]) -> nn.Sequential:
    """S x S -> S/4 x S/4 feature maps: a 3x3 convolution, then two stride-2 ones."""
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c2, c2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder (``variational=False``) or VAE of single-jet images.

    Encoder: three 3x3 convolutions (two of stride 2) and a dense layer to ``latent_dim``
    (``mu``; also ``logvar`` for a VAE). Decoder: the mirror image with transposed convolutions,
    ending in a softmax over all pixels, so every reconstruction is itself a unit-sum image.
    A VAE samples ``z = mu + exp(logvar / 2) * eps`` in training mode (``generator`` seeds eps)
    and uses ``z = mu`` in eval mode, so scoring is deterministic.
    """

    def __init__(
        self,
        image_size: int = 32,
        latent_dim: int = 8,
        variational: bool = False,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        _check_size(image_size)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.image_size, self.latent_dim, self.variational = image_size, latent_dim, variational
        self.channels = tuple(channels)
        c1, c2 = self.channels
        small = image_size // 4
        flat = c2 * small * small
        self.encoder = nn.Sequential(_encoder(1, self.channels), nn.Linear(flat, hidden), nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim) if variational else None
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, flat),
            nn.ReLU(),
            nn.Unflatten(1, (c2, small, small)),
            nn.ConvTranspose2d(c2, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, 1, 3, padding=1),
            nn.Flatten(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of a batch [N, 1, S, S]; logvar is None for a plain autoencoder."""
        _check_input(x, 1, self.image_size, "ConvAutoencoder")
        h = self.encoder(x * float(self.image_size**2))
        return self.to_mu(h), None if self.to_logvar is None else self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unit-sum images [N, 1, S, S] from latent vectors [N, latent_dim]."""
        logits = self.decoder(z)
        return torch.softmax(logits, dim=1).view(-1, 1, self.image_size, self.image_size)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def image_losses(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    mu: torch.Tensor | None = None,
    logvar: torch.Tensor | None = None,
    kl_weight: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample losses [N]: ``reconstruction``, ``kl`` and ``total`` (each an anomaly score).

    - reconstruction: mean over pixels of the squared error in units of the mean pixel (pixels
      times S^2), so the value does not depend on the image size;
    - kl: KL(q(z|x) || N(0, 1)) summed over latent dimensions (zeros for a plain autoencoder);
    - total: reconstruction + kl_weight * kl. The default kl_weight = 2 / S^2 makes ``total``
      the negative ELBO per pixel of a Gaussian decoder with unit variance in those units.
    """
    if x.shape != reconstruction.shape:
        raise ValueError(
            f"images {list(x.shape)} and reconstruction {list(reconstruction.shape)} differ"
        )
    pixels = x.shape[-1] * x.shape[-2]
    scale = float(pixels)
    reco = ((x - reconstruction) * scale).pow(2).flatten(1).mean(dim=1)
    if mu is None or logvar is None:
        kl = torch.zeros_like(reco)
    else:
        kl = -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    weight = 2.0 / pixels if kl_weight is None else float(kl_weight)
    return {"reconstruction": reco, "kl": kl, "total": reco + weight * kl}


class ConvClassifier(nn.Module):
    """Jet-image classifier (e.g. the Tag N' Train classifier on one jet): logits [N].

    The encoder of :class:`ConvAutoencoder` followed by a dense layer and one output logit;
    ``in_channels`` = 2 takes both jets' images of an event at once.
    """

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 1,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_size(image_size)
        self.image_size, self.in_channels = image_size, in_channels
        small = image_size // 4
        self.net = nn.Sequential(
            _encoder(in_channels, tuple(channels)),
            nn.Linear(channels[1] * small * small, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, self.image_size, "ConvClassifier")
        return self.net(x * float(self.image_size**2)).squeeze(1)


def _conv_autoencoder(
    input_shape: tuple[int, ...],
    *,
    latent_dim: int,
    hidden: tuple[int, ...],
    variational: bool,
    channels: tuple[int, int] | list[int] = (16, 32),
) -> ConvAutoencoder:
    """Builder of the ``conv`` network of the ``ae``/``vae`` methods (inputs ``[N, 1, S, S]``).

    ``hidden[0]`` is the width of the dense layer between the convolutions and the latent space;
    ``channels`` (``network_options``) the two convolution widths.
    """
    if len(input_shape) != 3 or input_shape[0] != 1 or input_shape[1] != input_shape[2]:
        raise ValueError(
            f"the conv network takes [N, 1, S, S] images, got input shape {input_shape}"
        )
    return ConvAutoencoder(
        image_size=int(input_shape[1]), latent_dim=latent_dim, variational=variational,
        channels=tuple(int(c) for c in channels), hidden=int(hidden[0]),
    )  # fmt: skip


def _register() -> None:
    from adhunt.models.autoencoders import register_network

    register_network("conv", _conv_autoencoder)


_register()
