#!/usr/bin/python3
# gen_torch_hostile.py: writes tests/ref/torch_hostile/, checkpoints made to
# attack a reader (torch.save zips and safetensors), and expected.tsv: each
# file and the words tns-from-torch's error must contain. Committed; the Bats
# suite torchio_hostile.bats (also under ASan/UBSan) runs them all. The
# pickles are written byte by byte or with the standard pickle module (no
# torch needed): code execution by REDUCE (os.system, builtins.eval, at
# protocols 2 and 4), module classes, a MARK recursion bomb, a list nested
# 50,000 deep, memo abuse, lengths far past the end, storages shorter than
# their tensors or than their views, a stride-0 view asking for 256 GB, an
# absurd storage size, a storage key with a path, one key with two dtypes,
# overlapping views (legal in torch: they must read safely), truncated and
# malformed zips, the legacy format;
# safetensors with lying header lengths, offsets, sizes, overlaps, JSON.
#   /usr/bin/python3 tests/ref/gen_torch_hostile.py
import io
import os
import pickle
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "torch_hostile")
cases = []  # (file, expected words)


def s(text):  # BINUNICODE
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def k(n):  # BININT (4 bytes), or LONG1 of 8
    return b"J" + struct.pack("<i", n) if -2**31 <= n < 2**31 else b"\x8a\x08" + struct.pack("<q", n)


def storage(key, numel, cls="FloatStorage"):
    """A BINPERSID storage id on the stack."""
    return b"(" + s("storage") + f"ctorch\n{cls}\n".encode() + s(key) + s("cpu") + k(numel) + b"tQ"


def tensor(key, numel, offset, size, stride, cls="FloatStorage"):
    tup = lambda xs: b"(" + b"".join(k(x) for x in xs) + b"t"  # noqa: E731
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage(key, numel, cls) + k(offset) + tup(size) +
            tup(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR")


def state_dict(entries):
    body = b"".join(s(name) + t for name, t in entries)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def torch_zip(pkl, storages=(), extra=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        put(z, "archive/data.pkl", pkl)
        for key, data in storages:
            put(z, f"archive/data/{key}", data)
        for name, data in extra:
            put(z, name, data)
        put(z, "archive/version", b"3\n")
    return buf.getvalue()


def put(z, name, data):  # a fixed date, so the files are the same every time
    z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)


def write(name, data, expected):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    cases.append((name, expected))


class Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def main():
    os.makedirs(OUT, exist_ok=True)
    zeros = lambda n: bytes(4 * n)  # noqa: E731
    # Code execution: the payload would create a file named PWNED.
    write("os_system.pt", torch_zip(pickle.dumps({"w": Reduce(os.system, "touch PWNED")}, protocol=2)),
          "forbidden global posix.system")
    write("os_system_p4.pt", torch_zip(pickle.dumps(Reduce(os.system, "touch PWNED"), protocol=4)),
          "forbidden global posix.system")
    write("eval.pt", torch_zip(pickle.dumps(Reduce(eval, "open('PWNED','w')"), protocol=2)),
          "forbidden global __builtin__.eval")
    write("exec_in_dict.pt", torch_zip(b"\x80\x02}" + s("a") + b"cbuiltins\nexec\n" + s("open('PWNED','w')") +
                                       b"\x85Rs."), "forbidden global builtins.exec")
    write("module_class.pt", torch_zip(b"\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81."),
          "forbidden global torch.nn.modules.linear.Linear")
    write("newobj.pt", torch_zip(b"\x80\x02ccollections\nOrderedDict\n)\x81."), "opcode 0x81 is not allowed")
    # Resource abuse.
    write("mark_bomb.pt", torch_zip(b"\x80\x02" + b"(" * 10000 + b"."), "MARKs nested deeper than")
    write("list_bomb.pt", torch_zip(b"\x80\x02" + b"]" * 50000 + b"a" * 49999 + b"."), "is not a dict")
    write("memo_far.pt", torch_zip(b"\x80\x02Nr\xff\xff\xff\x7f."), "memo index 2147483647")
    write("memo_empty.pt", torch_zip(b"\x80\x02h\xc8."), "memo slot 200 is empty")
    write("long_string.pt", torch_zip(b"\x80\x02X\xff\xff\xff\xffabc."), "a string of 4294967295 bytes")
    write("long_bytes8.pt", torch_zip(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"."),
          "a string of 4611686018427387904 bytes")
    write("huge_storage.pt", torch_zip(state_dict([("w", tensor("0", 1 << 50, 0, [4], [1]))])),
          "a storage of 1125899906842624 elements")
    # Storages and views that do not fit.
    write("short_storage.pt", torch_zip(state_dict([("w", tensor("0", 100, 0, [100], [1]))]), [("0", zeros(10))]),
          "storage 0 holds 40 bytes, its 100 f32 elements need 400")
    write("view_past_storage.pt", torch_zip(state_dict([("w", tensor("0", 50, 0, [10, 10], [10, 1]))]),
                                            [("0", zeros(50))]), "reaching element 99 of storage 0, which holds 50")
    write("offset_past_storage.pt", torch_zip(state_dict([("w", tensor("0", 50, 45, [10], [1]))]),
                                              [("0", zeros(50))]), "reaching element 54 of storage 0")
    write("stride_overflow.pt", torch_zip(state_dict([("w", tensor("0", 50, 0, [2, 2], [(1 << 31) - 1, 1]))]),
                                          [("0", zeros(50))]), "reaching element 2147483648 of storage 0")
    write("expand_bomb.pt", torch_zip(state_dict([("w", tensor("0", 1, 0, [1 << 30, 64], [0, 0]))]),
                                      [("0", zeros(1))]), "repeats its storage's elements")
    write("missing_storage.pt", torch_zip(state_dict([("w", tensor("7", 4, 0, [4], [1]))])),
          "no file data/7 for storage 7")
    write("storage_path.pt", torch_zip(state_dict([("w", tensor("../../etc/passwd", 4, 0, [4], [1]))])),
          "a storage key that is not")
    write("dtype_clash.pt", torch_zip(state_dict([("a", tensor("0", 4, 0, [4], [1])),
                                                  ("b", tensor("0", 4, 0, [4], [1], "LongStorage"))]),
                                      [("0", zeros(4))]), "storage 0 declared twice")
    # Overlapping views of one storage are legal (tied weights): read safely,
    # then refused by the name check, as these names are no model's
    # (the suite runs every file with --arch mlp --in 4 --num-classes 3).
    write("overlapping_views.pt", torch_zip(state_dict([("tied.a", tensor("0", 16, 0, [3, 4], [4, 1])),
                                                        ("tied.b", tensor("0", 16, 2, [4, 3], [1, 4]))]),
                                            [("0", zeros(16))]), "the checkpoint lacks fc1.weight")
    # Zips.
    good = torch_zip(state_dict([("w", tensor("0", 4, 0, [4], [1]))]), [("0", zeros(4))])
    write("truncated.pt", good[:len(good) // 2], "torch zip")
    write("no_pickle.pt", torch_zip(b"")[:0] + zipfile_without_pickle(), "no data.pkl")
    write("two_folders.pt", torch_zip(state_dict([]), extra=[("other/data/0", zeros(1))]), "two top folders")
    write("legacy.pt", pickle.dumps({"a": 1}, protocol=2), "legacy format")
    write("not_a_dict.pt", torch_zip(b"\x80\x02K\x01."), "is not a dict")
    # safetensors
    hdr = lambda h: struct.pack("<Q", len(h)) + h  # noqa: E731
    write("header_length.safetensors", struct.pack("<Q", 1 << 63) + b"{}", "a header of 9223372036854775808 bytes")
    write("offsets_past_end.safetensors", hdr(b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}') + zeros(2),
          "ends at byte 16 of the data, which has 8")
    write("size_lies.safetensors", hdr(b'{"w":{"dtype":"F32","shape":[10],"data_offsets":[0,8]}}') + zeros(2),
          "takes 8 bytes, its shape and dtype need 40")
    write("overlap.safetensors", hdr(b'{"a":{"dtype":"F32","shape":[10],"data_offsets":[0,40]},'
                                     b'"b":{"dtype":"F32","shape":[10],"data_offsets":[20,60]}}') + zeros(15),
          "share bytes")
    write("bad_json.safetensors", hdr(b'{"w":{"dtype":"F32",'), "safetensors header: JSON")
    write("deep_json.safetensors", hdr(b'{"a":' + b"[" * 100000), "safetensors header: JSON")
    write("bad_dtype.safetensors", hdr(b'{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}') + b"\0",
          "has dtype F8_E4M3")
    write("huge_shape.safetensors", hdr(b'{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],'
                                        b'"data_offsets":[0,0]}}'), "safetensors: w: shape too large")
    write("negative_offset.safetensors", hdr(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}'),
          "has no data_offsets")
    with open(os.path.join(OUT, "expected.tsv"), "w") as f:
        for name, words in cases:
            f.write(f"{name}\t{words}\n")


def zipfile_without_pickle():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        put(z, "archive/version", b"3\n")
    return buf.getvalue()


if __name__ == "__main__":
    main()
