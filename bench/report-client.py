"""Load generator for bench/engine-report.ts (KAON_BENCH_CLIENT=python): Report calls made the
way the Python SDK's in-job reporter makes them (sdk-python/src/kaon/_reporter.py): per job
its own channel with the SDK's channel options, ONE call in flight (the next batch goes out
when the previous one is answered), sequence 1, 2, 3, ..., the bearer token as metadata and a
10 s deadline. The SDK does this from a background thread with the blocking stub; here the
jobs are asyncio tasks over grpc.aio channels, which put the same calls on the wire for less
client CPU (so the 2 cores go to core rather than to the load generator).
Prints {"ms": ..., "calls": ..., "cpuMs": ...}.
Run by the benchmark: python bench/report-client.py CALLS ITEMS ADDRESS TOKENS_FILE"""

import asyncio
import json
import sys
import time

import grpc
from google.protobuf import struct_pb2

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/sdk-python/src")
from kaon._client import _MAX_MESSAGE
from kaon.v1 import job_service_pb2, job_service_pb2_grpc, run_pb2

# The SDK's channel options (kaon._client.open_channel).
OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.enable_retries", 0),
]
# The SDK's deadline for a Report call (Reporter._call: timeout=10).
TIMEOUT = 10


def read_tokens(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


async def main(calls: int, items: int, address: str, tokens: list[str]) -> None:
    per_job = calls // len(tokens)
    counters = [
        run_pb2.ReportItem(counter=run_pb2.Counter(name="c", delta=1))
        for _ in range(items - 1)
    ]
    channels = [grpc.aio.insecure_channel(address, options=OPTIONS) for _ in tokens]

    async def reporter(token: str, channel: grpc.aio.Channel) -> None:
        job = job_service_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        for seq in range(1, per_job + 1):
            output = run_pb2.ReportItem(
                output=run_pb2.Output(
                    name="n", value=struct_pb2.Value(number_value=seq)
                )
            )
            request = job_service_pb2.ReportRequest(
                sequence=seq, items=[output, *counters]
            )
            await job.Report(request, timeout=TIMEOUT, metadata=metadata)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(reporter(t, c) for t, c in zip(tokens, channels)))
    ms = (time.perf_counter() - t0) * 1000
    cpu_ms = (time.process_time() - cpu0) * 1000
    for channel in channels:
        await channel.close(None)
    print(json.dumps({"ms": ms, "calls": per_job * len(tokens), "cpuMs": cpu_ms}))


asyncio.run(
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], read_tokens(sys.argv[4]))
)
