#!/usr/bin/env python3
"""A complete TNS reader in plain Python (msgpack + numpy), as specified in tns(5).

    python3 examples/tns_read.py stream.tns      # prints one line per record
"""
import sys
import msgpack
import numpy as np

DTYPES = {"f32": "<f4", "f64": "<f8", "f16": "<f2", "i8": "i1", "u8": "u1",
          "i16": "<i2", "i32": "<i4", "i64": "<i8", "bool": "?"}

def records(f):
    """Yields (record map, array or None) for each record of a binary file."""
    unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=2**33)
    for rec in unpacker:
        if not isinstance(rec, dict) or next(iter(rec), None) != "fmt" or rec["fmt"] != "tns":
            raise ValueError("not a TNS record")
        if rec["ver"] > 1:
            raise ValueError("unsupported version %d" % rec["ver"])
        array = None
        if "data" in rec:
            if rec["dtype"] == "bf16":   # numpy has no bfloat16: widen to f32
                bits = np.frombuffer(rec["data"], "<u2").astype("<u4") << 16
                array = bits.view("<f4").reshape(rec["shape"])
            else:
                array = np.frombuffer(rec["data"], DTYPES[rec["dtype"]]).reshape(rec["shape"])
        yield rec, array

if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        for rec, array in records(f):
            shape = "x".join(map(str, array.shape)) if array is not None else "-"
            print(rec["kind"], rec.get("name", ""), rec.get("dtype", "-"), shape, sep="\t")
