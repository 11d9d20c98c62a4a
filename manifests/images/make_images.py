"""Draw the demo product photos with Pillow, so the demo needs no downloaded or licensed images.

Run from anywhere: ``python manifests/images/make_images.py``. The output is deterministic;
each file stays well under 150 KB.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def backdrop(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A studio sweep: a vertical gradient with a soft floor line."""
    w, h = size
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    for y in range(h):
        t = y / (h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return im


def shadow(im: Image.Image, box: tuple[int, int, int, int], strength: int = 90) -> None:
    layer = Image.new("L", im.size, 0)
    ImageDraw.Draw(layer).ellipse(box, fill=strength)
    layer = layer.filter(ImageFilter.GaussianBlur(18))
    im.paste((20, 20, 25), mask=layer)


def mug() -> Image.Image:
    im = backdrop((1024, 768), (236, 228, 214), (190, 176, 160))
    shadow(im, (330, 600, 700, 660))
    d = ImageDraw.Draw(im)
    d.ellipse((620, 330, 780, 520), outline=(176, 58, 46), width=34)
    d.rounded_rectangle((340, 260, 680, 630), radius=36, fill=(196, 70, 56))
    d.ellipse((340, 235, 680, 290), fill=(150, 48, 38))
    d.ellipse((356, 243, 664, 283), fill=(70, 40, 28))
    d.rectangle((380, 300, 410, 600), fill=(220, 104, 88))
    return im


def sneaker() -> Image.Image:
    im = backdrop((1024, 768), (210, 226, 240), (150, 170, 190))
    shadow(im, (200, 560, 860, 620))
    d = ImageDraw.Draw(im)
    d.polygon([(220, 560), (250, 400), (420, 330), (560, 420), (800, 470), (840, 560)], fill=(245, 245, 245))
    d.rounded_rectangle((200, 545, 860, 600), radius=24, fill=(40, 40, 48))
    d.polygon([(420, 330), (470, 300), (520, 330), (560, 420)], fill=(230, 90, 40))
    for x in range(440, 560, 28):
        d.line([(x, 360), (x + 40, 400)], fill=(60, 60, 70), width=6)
    d.arc((560, 430, 760, 560), 200, 340, fill=(230, 90, 40), width=14)
    return im


def bottle() -> Image.Image:
    im = backdrop((768, 1024), (225, 240, 230), (160, 190, 170))  # portrait
    shadow(im, (250, 880, 520, 930))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((270, 330, 500, 900), radius=60, fill=(40, 110, 80))
    d.rectangle((335, 180, 435, 340), fill=(40, 110, 80))
    d.rounded_rectangle((325, 140, 445, 200), radius=12, fill=(200, 170, 90))
    d.rectangle((270, 500, 500, 700), fill=(240, 232, 210))
    d.text((310, 585), "ORCHARD", fill=(40, 70, 50))
    d.rectangle((290, 360, 310, 860), fill=(90, 160, 120))
    return im


def watch() -> Image.Image:
    im = backdrop((1024, 768), (40, 44, 52), (12, 12, 16))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((445, 60, 580, 290), radius=20, fill=(90, 60, 40))
    d.rounded_rectangle((445, 480, 580, 710), radius=20, fill=(90, 60, 40))
    d.ellipse((360, 230, 664, 534), fill=(190, 190, 196))
    d.ellipse((384, 254, 640, 510), fill=(245, 243, 236))
    for i in range(12):
        a = math.radians(i * 30)
        cx, cy = 512 + 110 * math.sin(a), 382 - 110 * math.cos(a)
        d.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), fill=(30, 30, 30))
    d.line([(512, 382), (512, 300)], fill=(30, 30, 30), width=8)
    d.line([(512, 382), (575, 420)], fill=(30, 30, 30), width=6)
    d.line([(512, 382), (450, 330)], fill=(200, 40, 40), width=2)
    return im


def lamp() -> Image.Image:
    im = backdrop((1024, 768), (250, 240, 220), (200, 185, 160))
    glow = Image.new("L", im.size, 0)
    ImageDraw.Draw(glow).ellipse((320, 120, 700, 460), fill=120)
    im.paste((255, 236, 180), mask=glow.filter(ImageFilter.GaussianBlur(60)))
    shadow(im, (380, 640, 640, 690))
    d = ImageDraw.Draw(im)
    d.polygon([(400, 200), (620, 200), (680, 380), (340, 380)], fill=(235, 205, 140))
    d.rectangle((500, 380, 520, 620), fill=(60, 60, 64))
    d.ellipse((420, 600, 600, 660), fill=(60, 60, 64))
    return im


def headphones() -> Image.Image:
    im = backdrop((1024, 768), (230, 220, 240), (170, 160, 190))
    shadow(im, (300, 600, 720, 650))
    d = ImageDraw.Draw(im)
    d.arc((330, 140, 690, 560), 180, 360, fill=(50, 50, 60), width=36)
    d.rounded_rectangle((300, 340, 400, 560), radius=40, fill=(70, 70, 84))
    d.rounded_rectangle((620, 340, 720, 560), radius=40, fill=(70, 70, 84))
    d.rounded_rectangle((380, 370, 420, 530), radius=14, fill=(120, 90, 200))
    d.rounded_rectangle((600, 370, 640, 530), radius=14, fill=(120, 90, 200))
    return im


def main() -> None:
    for name, draw, fmt in [
        ("mug.jpg", mug, "JPEG"), ("sneaker.jpg", sneaker, "JPEG"), ("bottle.jpg", bottle, "JPEG"),
        ("watch.png", watch, "PNG"), ("lamp.jpg", lamp, "JPEG"), ("headphones.png", headphones, "PNG"),
    ]:
        im = draw()
        if fmt == "PNG":
            # A 64-colour palette keeps the flat-shaded PNGs small.
            im.quantize(64).save(HERE / name, optimize=True)
        else:
            im.save(HERE / name, quality=85, optimize=True)
        print(f"{name}: {im.size[0]}x{im.size[1]}, {(HERE / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
