"""Drawing for the synthetic benchmark: coloured shapes on small RGB frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 32
OBJECT_SIZE = 8
BACKGROUND = (16, 16, 16)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 200, 60),
    "blue": (45, 85, 235),
    "yellow": (235, 215, 30),
    "magenta": (215, 50, 205),
    "cyan": (40, 205, 215),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
}
# Objects use four colours and scenes three others, so options can keep one fixed order per question
# type: the letter of an answer is then a property of the answer, which a tiny model learns quickly.
OBJECT_COLOURS = ("red", "green", "blue", "yellow")
SCENE_COLOURS = ("cyan", "magenta", "orange")
SHAPES = ("square", "circle", "triangle", "diamond")


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean [size, size] mask of a shape centred in its box."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= c**2
    if shape == "triangle":  # apex up
        return (yy >= 0) & (np.abs(xx - c) <= yy / 2)
    if shape == "diamond":
        return np.abs(xx - c) + np.abs(yy - c) <= c
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")


@dataclass(frozen=True)
class Sprite:
    """One object on a frame: shape, colour, top-left corner and size in pixels."""

    shape: str
    colour: str
    x: int
    y: int
    size: int = OBJECT_SIZE

    def moved(self, x: int, y: int) -> Sprite:
        return Sprite(self.shape, self.colour, x, y, self.size)

    def recoloured(self, colour: str) -> Sprite:
        return Sprite(self.shape, colour, self.x, self.y, self.size)

    def resized(self, size: int) -> Sprite:
        centre_x, centre_y = self.x + self.size // 2, self.y + self.size // 2
        return Sprite(self.shape, self.colour, centre_x - size // 2, centre_y - size // 2, size)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def render(sprites: list[Sprite], background: str | tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """A uint8 [H, W, 3] frame with the sprites drawn in order (later ones on top), clipped at the edges."""
    bg = COLOURS[background] if isinstance(background, str) else background
    frame = np.empty((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    frame[:] = bg
    for sprite in sprites:
        mask = _shape_mask(sprite.shape, sprite.size)
        y0, x0 = sprite.y, sprite.x
        ys, xs = (
            slice(max(y0, 0), min(y0 + sprite.size, FRAME_SIZE)),
            slice(max(x0, 0), min(x0 + sprite.size, FRAME_SIZE)),
        )
        sub = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        frame[ys, xs][sub] = COLOURS[sprite.colour]
    return frame
