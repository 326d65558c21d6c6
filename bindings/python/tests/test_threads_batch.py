"""One codec shared by threads; the batch forms (the GIL released for the whole batch)."""

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import fieldcrypt
from support import customer_bytes, make_codec


def test_one_codec_shared_by_8_threads():
    codec = make_codec()

    def work(t):
        out = []
        for i in range(200):
            plain = customer_bytes(name=f"thread {t} record {i}", password=f"pw-{t}-{i}")
            sealed = codec.encrypt("customers", plain, [("n", str(i).encode())])
            out.append((plain, sealed))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for chunk in pool.map(work, range(8)) for r in chunk]
    assert len(results) == 1600
    assert codec.stats()["records_encrypted"] == 1600
    assert codec.stats()["deks_created"] == 1, "one DEK for all threads"
    consumer = make_codec()
    # One record first: threads that miss the DEK cache at the same moment would each unwrap it.
    consumer.decrypt("customers", results[0][1].value, results[0][1].headers)
    with ThreadPoolExecutor(8) as pool:
        opened = list(pool.map(lambda r: consumer.decrypt("customers", r[1].value, r[1].headers), results))
    assert [o.value for o in opened] == [plain for plain, _ in results]
    assert consumer.stats()["kms_unwrap_calls"] == 1, "one KMS call per DEK"


def test_batches():
    codec = make_codec()
    records = [(customer_bytes(name=f"c{i}"), [("i", str(i).encode())]) for i in range(50)]
    records.append((customer_bytes(), None, b"key-1"))  # with a record key
    records.append((None, {}))  # a tombstone
    snapshot = copy.deepcopy(records)
    sealed = codec.encrypt_batch("customers", records)
    assert records == snapshot, "inputs are not changed"
    assert len(sealed) == 52 and all(isinstance(r, fieldcrypt.Record) for r in sealed)
    assert all(b"hunter2" not in r.value for r in sealed[:51])
    assert sealed[50].key == b"key-1" and sealed[51].value is None
    # Records go straight back in; so do tuples.
    opened = make_codec().decrypt_batch("customers", sealed)
    assert [r.value for r in opened] == [r[0] for r in records]
    assert opened[0].headers == [("i", b"0")]
    again = make_codec().decrypt_batch("customers", ((r.value, r.headers, r.key) for r in sealed))
    assert [r.value for r in again] == [r.value for r in opened]
    assert codec.encrypt_batch("customers", []) == []


def test_a_batch_fails_as_a_whole_and_names_the_record():
    codec = make_codec()
    records = [(customer_bytes(), []) for _ in range(5)]
    records[3] = (b"not json", [])
    with pytest.raises(fieldcrypt.RecordError) as e:
        codec.encrypt_batch("customers", records)
    assert e.value.index == 3
    for bad in ([b"v"], [(b"v",)], [("text", [])], [(b"v", [], "key")], 5):
        with pytest.raises(TypeError):
            codec.encrypt_batch("customers", bad)


def test_batch_releases_the_gil():
    """While a batch runs, other Python threads run: the longest pause this thread sees is a
    small part of the batch's time (with the GIL held it would be nearly all of it)."""
    codec = make_codec()
    big = "x" * 65536
    records = [(customer_bytes(password=big, visa=big), []) for _ in range(300)]
    codec.encrypt_batch("customers", records[:2])  # warm up: the DEK and the plans
    done = threading.Event()
    took = []

    def run():
        start = time.perf_counter()
        codec.encrypt_batch("customers", records)
        took.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=run)
    last = time.perf_counter()
    longest = 0.0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    worker.join()
    assert took[0] > 0.05, f"the batch took {took[0]:.3f}s: too short to tell"
    assert longest < 0.5 * took[0], f"this thread stalled {longest:.3f}s of the batch's {took[0]:.3f}s"


def test_values_must_be_bytes(codec):
    with pytest.raises(TypeError):
        codec.encrypt("customers", json.dumps({"a": 1}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.encrypt("customers", b"{}", key="k")  # type: ignore[arg-type]
