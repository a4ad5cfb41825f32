"""addon/png.py: RGBA PNG encoding from Blender-layout pixels (bpy-free)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from addon import png


def decode(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """(width, height, rows top-down of RGBA tuples) of an 8-bit RGBA PNG with filter 0, checking every CRC."""
    assert data[:8] == png.SIGNATURE
    offset, idat, header = 8, b"", None
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour, *_ = header
    assert (depth, colour) == (8, 6)
    raw = zlib.decompress(idat)
    rows = []
    for r in range(height):
        line = raw[r * (4 * width + 1) : (r + 1) * (4 * width + 1)]
        assert line[0] == 0
        rows.append([tuple(line[1 + 4 * c : 5 + 4 * c]) for c in range(width)])
    return width, height, rows


def test_rows_are_flipped_to_top_down_and_values_rounded():
    # Blender layout: bottom row first. Bottom: red, half grey; top: transparent blue, white.
    pixels = [1, 0, 0, 1, 0.5, 0.5, 0.5, 1, 0, 0, 1, 0, 1, 1, 1, 1]
    width, height, rows = decode(png.encode_rgba(pixels, 2, 2))
    assert (width, height) == (2, 2)
    assert rows == [[(0, 0, 255, 0), (255, 255, 255, 255)], [(255, 0, 0, 255), (128, 128, 128, 255)]]
    assert png.size(png.encode_rgba(pixels, 2, 2)) == (2, 2)


def test_out_of_range_and_nan_are_clamped():
    _, _, rows = decode(png.encode_rgba([-1.0, 2.0, float("nan"), float("inf")], 1, 1))
    assert rows == [[(0, 255, 0, 255)]]


def test_linear_pixels_are_converted_to_srgb_but_alpha_is_not():
    # Linear 0.21586 is sRGB 128/255; 0.0023 is on the straight part near black (12.92 x: 7.6/255).
    _, _, rows = decode(png.encode_rgba([0.0023, 0.21586, 1.0, 0.5], 1, 1, linear=True))
    assert rows == [[(8, 128, 255, 128)]]  # alpha 0.5 stays 128: it is a fraction, not a colour
    _, _, rows = decode(png.encode_rgba([0.0, 0.21586, 1.0, 0.25], 1, 1, linear=True))
    assert rows[0][0][3] == 64


def test_pillow_reads_the_same_pixels():
    image_module = pytest.importorskip("PIL.Image")
    pixels = [i / 47 for i in range(48)]  # 4 x 3, every value different
    picture = image_module.open(io.BytesIO(png.encode_rgba(pixels, 4, 3)))
    assert picture.mode == "RGBA" and picture.size == (4, 3)
    expected_bottom = [tuple(round(v * 255) for v in pixels[4 * c : 4 * c + 4]) for c in range(4)]
    assert [picture.getpixel((c, 2)) for c in range(4)] == expected_bottom  # PIL's last row is Blender's first


@pytest.mark.parametrize(("pixels", "width", "height", "match"), [([0.0] * 4, 0, 1, "positive"), ([0.0] * 3, 1, 1, "4 \\* 1 \\* 1")])
def test_bad_sizes_are_rejected(pixels, width, height, match):
    with pytest.raises(ValueError, match=match):
        png.encode_rgba(pixels, width, height)


def test_size_rejects_non_png():
    with pytest.raises(ValueError, match="not a PNG"):
        png.size(b"GIF89a....................")
