#!/usr/bin/env python3
"""Rebuilds the seed corpora of the fuzz targets (tests/fuzz/corpus/{safetensors,csv,idx,files}/).

Standard library only. The safetensors files are laid out exactly as dp::io::encode writes them
(entries sorted by name, "__metadata__" last with "format" and "dp.crc32", the header padded with
spaces so the data starts 8-byte aligned), plus a few in PyTorch's style and a few malformed ones.
Run from anywhere: python3 tests/fuzz/make_corpus.py
"""
import gzip
import json
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

FMT = {"F32": "<f", "F64": "<d", "I64": "<q", "I32": "<i", "U8": "<B", "BOOL": "<?"}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def pack(dtype, values):
    return b"".join(struct.pack(FMT[dtype], v) for v in values)


def encode_dp(entries, metadata=(("format", "pt"),)):
    """dp::io::encode: entries is a list of (name, dtype, shape, values)."""
    head, data = "{", b""
    for name, dtype, shape, values in sorted(entries, key=lambda e: e[0].encode()):
        assert len(values) == numel(shape)
        b = pack(dtype, values)
        head += (json.dumps(name) + ':{"dtype":"' + dtype + '","shape":[' + ",".join(map(str, shape)) +
                 '],"data_offsets":[' + str(len(data)) + "," + str(len(data) + len(b)) + "]},")
        data += b
    meta = list(metadata) + [("dp.crc32", "%08x" % (zlib.crc32(data) & 0xFFFFFFFF))]
    head += '"__metadata__":{' + ",".join(json.dumps(k) + ":" + json.dumps(v) for k, v in meta) + "}}"
    while (8 + len(head)) % 8:
        head += " "
    h = head.encode()
    return struct.pack("<Q", len(h)) + h + data


def raw(header, data=b""):
    """A file with a header given as text (any JSON, or not JSON at all)."""
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def torch_style(entries, metadata=None):
    """Like safetensors.torch.save_file: no CRC, compact JSON, insertion order."""
    hdr, data = {}, b""
    for name, dtype, shape, values in entries:
        b = pack(dtype, values)
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    if metadata:
        hdr["__metadata__"] = metadata
    return raw(json.dumps(hdr, separators=(",", ":")), data)


TINY = [  # fits the fuzz target's model: linear<2, 3> fc, batch_norm<3> bn
    ("fc.weight", "F32", [3, 2], [0.5, -0.25, 1.0, 2.0, -1.5, 0.125]),
    ("fc.bias", "F32", [3], [0.0, 1.0, -1.0]),
    ("bn.weight", "F32", [3], [1.0, 1.0, 1.0]),
    ("bn.bias", "F32", [3], [0.0, 0.0, 0.0]),
    ("bn.running_mean", "F32", [3], [0.1, 0.2, 0.3]),
    ("bn.running_var", "F32", [3], [1.0, 2.0, 3.0]),
    ("bn.num_batches_tracked", "I64", [], [7]),
]
MIXED = [
    ("a", "F64", [2, 2], [1.0, -2.0, 3.5, 1e300]),
    ("b", "I32", [3], [1, -1, 2147483647]),
    ("c", "U8", [2, 1, 2], [0, 1, 255, 7]),
    ("d", "BOOL", [4], [True, False, False, True]),
    ("e", "I64", [], [-9]),
    ("f", "F32", [0, 3], []),
    ("g", "F32", [1], [float("nan")]),
]


def safetensors_files():
    tiny = encode_dp(TINY)
    f = {
        "tiny.safetensors": tiny,
        "mixed.safetensors": encode_dp(MIXED),
        "empty.safetensors": encode_dp([]),
        "scalar_f32.safetensors": encode_dp([("x", "F32", [], [3.0])], metadata=()),
        "torch_tiny.safetensors": torch_style(TINY, {"format": "pt"}),
        "torch_escapes.safetensors": torch_style([("w\u00e9\\\"\n", "F32", [1], [1.0])]),
        "f64_model.safetensors": torch_style([(n, "F64" if d == "F32" else d, s, v) for n, d, s, v in TINY]),
    }
    # Malformed ones: each breaks one rule.
    bad_crc = bytearray(tiny)
    bad_crc[-1] ^= 0x01
    f["bad_crc.safetensors"] = bytes(bad_crc)
    f["truncated_data.safetensors"] = tiny[:-5]
    f["truncated_header.safetensors"] = tiny[:20]
    f["short.safetensors"] = b"\x10\x00\x00"
    f["huge_length.safetensors"] = struct.pack("<Q", 1 << 62) + b"{}"
    f["not_json.safetensors"] = raw('{"a":{"dtype":"F32",', b"\0" * 4)
    f["not_object.safetensors"] = raw("[1,2,3]")
    f["unknown_dtype.safetensors"] = raw('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4)
    f["overlap.safetensors"] = raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                   '"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"\0" * 3)
    f["hole.safetensors"] = raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0" * 2)
    f["size_mismatch.safetensors"] = raw('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}', b"\0" * 8)
    f["big_shape.safetensors"] = raw('{"a":{"dtype":"U8","shape":[1099511627775,0,3],"data_offsets":[0,0]}}')
    # Regression: a zero dimension once hid huge others (int64 overflow of the strides).
    f["zero_hides_huge.safetensors"] = raw('{"a":{"dtype":"F32","shape":[0,1099511627775,1099511627775],'
                                           '"data_offsets":[0,0]}}')
    f["neg_offset.safetensors"] = raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}', b"\0")
    f["float_shape.safetensors"] = raw('{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', b"\0")
    f["deep.safetensors"] = raw("[" * 40 + "]" * 40)
    f["duplicate.safetensors"] = raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                     '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0")
    f["bad_bool.safetensors"] = raw('{"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}}', b"\x00\x01\x02")
    f["bad_meta.safetensors"] = raw('{"__metadata__":{"dp.crc32":5}}')
    f["wrong_model.safetensors"] = encode_dp([(n, d, s[::-1] if n == "fc.weight" else s, v) for n, d, s, v in TINY])
    f["extra_entry.safetensors"] = encode_dp(TINY + [("extra", "U8", [1], [1])])
    f["escapes.safetensors"] = raw('{"\\u00e9\\ud83d\\t":{"dtype":"U8","shape":[],"data_offsets":[0,1]},'
                                   '"__metadata__":{"k":"\\"\\/\\b\\f\\n\\r"}}', b"\x05")
    return f


def csv_files():
    with gzip.open(os.path.join(ROOT, "examples", "data", "digits.csv.gz"), "rt") as g:
        digits = [next(g) for _ in range(4)]
    return {
        "digits.csv": "".join(digits),
        "digits_crlf.csv": "".join(line.rstrip("\n") + "\r\n" for line in digits[:2]),
        "header.csv": "label,x0,x1,x2\n3,0.5,1e-3,-2\n0, 1 ,2,3\n\n7,inf,nan,4.25\n",
        "semicolon.csv": "x;y;z\n1.5;2;0\n-3;4;1\n",
        "tabs.csv": "\n1.5\t2\t0\n \t4\t1\n-3\t4\t\n",
        "two_columns.csv": "0.1,1\n0.2,0\n0.3,1",
        "ragged.csv": "1,2,3\n4,5\n",
        "not_number.csv": "1,abc,3\n",
        "negative_label.csv": "1,2,-3\n",
        "big_label.csv": "1,2,99999999999999999999\n",
        "one_column.csv": "1\n2\n",
        "empty_cells.csv": "1,,2\n,,\n",
        "blank.csv": "\n \n\t\r\n",
        "tabs.csv": "\t1\t,\t2\t,3\r\n",
    }


def idx(type_byte, dims, payload):
    return bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_files():
    images = bytes((i * 37) % 256 for i in range(3 * 4 * 4))
    return {
        "images-idx3-ubyte": idx(0x08, [3, 4, 4], images),
        "labels-idx1-ubyte": idx(0x08, [3], bytes([7, 2, 1])),
        "i8-idx1": idx(0x09, [4], bytes([0, 127, 128, 255])),
        "i16-idx2": idx(0x0B, [2, 2], struct.pack(">4h", 1, -1, 32767, -32768)),
        "i32-idx1": idx(0x0C, [3], struct.pack(">3i", 1, -1, -(2 ** 31))),
        "f32-idx1": idx(0x0D, [3], struct.pack(">3f", 1.5, -0.0, 3e38)),
        "f64-idx1": idx(0x0E, [3], struct.pack(">3d", 2.5, -1e-300, 3e38)),
        # Refused values: non-finite, beyond float, an int32 a float rounds, bytes past the data.
        "f32-inf-idx1": idx(0x0D, [3], struct.pack(">3f", 1.5, -0.0, float("inf"))),
        "f64-big-nan-idx1": idx(0x0E, [3], struct.pack(">3d", 2.5, 1e300, float("nan"))),
        "i32-rounds-idx1": idx(0x0C, [2], struct.pack(">2i", 2 ** 24, 2 ** 24 + 1)),
        "trailing-idx1": idx(0x08, [1], bytes([7, 3, 5])),
        "empty-idx2": idx(0x08, [0, 5], b""),
        "truncated-idx3": idx(0x08, [3, 4, 4], images[:20]),
        "truncated-header": bytes([0, 0, 8, 3, 0, 0, 0]),
        "bad-magic": bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]),
        "bad-type": idx(0x0A, [1], b"\x00"),
        "zero-dims": bytes([0, 0, 8, 0]),
        "huge-dims": idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF], b""),
        # Regressions: a zero dimension once hid huge others, and the element count once wrapped to 0.
        "zero-hides-huge": idx(0x08, [0, 0xFFFFFFFF, 0xFFFFFFFF], b""),
        "count-wraps": idx(0x08, [1 << 20, 1 << 20, 1 << 24], b""),
    }


def files_files():
    """tests/fuzz/files.cpp: the first byte picks the file made from the rest (0 a .csv.gz as is, 1 CSV
    text gzip-compressed then damaged by the last three bytes, 2 edits to a valid checkpoint, 3 IDX)."""
    digits = csv_files()["digits.csv"].encode()
    images = idx_files()["images-idx3-ubyte"]
    return {
        "gz-digits": b"\x00" + gzip.compress(digits, mtime=0),
        "gz-half": b"\x00" + gzip.compress(digits, mtime=0)[:60],
        "gz-trailing": b"\x00" + gzip.compress(digits, mtime=0) + b"garbage",
        "gz-not-gzip": b"\x00" + digits,
        "damaged-cut": b"\x01" + digits + b"\x00\x40\x01",
        "damaged-flip": b"\x01" + digits + b"\x00\x30\x08",
        "intact": b"\x01" + digits + b"\xff\xff\x00",
        "checkpoint-as-is": b"\x02",
        "checkpoint-edit-header": b"\x02" + bytes([0, 20, ord("x")]),
        "checkpoint-edit-data": b"\x02" + bytes([1, 200, 0x7F]),
        "checkpoint-cut": b"\x02" + bytes([0, 0, 0]) * 8 + bytes([1, 0]),
        "idx-images": b"\x03" + images,
        "idx-truncated": b"\x03" + images[:20],
    }


def main():
    for name, files in (("safetensors", safetensors_files()), ("csv", csv_files()), ("idx", idx_files()),
                        ("files", files_files())):
        d = os.path.join(CORPUS, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for fname, content in files.items():
            with open(os.path.join(d, fname), "wb") as out:
                out.write(content.encode() if isinstance(content, str) else content)
        print(f"{d}: {len(files)} files")


if __name__ == "__main__":
    main()
