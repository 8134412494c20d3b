"""Load generator for bench/engine-report.ts (KAON_BENCH_CLIENT=python): the same Report calls
as the Node client, through grpcio's C core, which costs less CPU per call than grpc-js, so on
a 2-core machine more of the CPU is left to core. Prints {"ms": ..., "cpuMs": ...}.
Run by the benchmark: python bench/report-client.py CALLS ITEMS ADDRESS TOKEN"""

import asyncio
import json
import sys
import time

import grpc
from google.protobuf import struct_pb2

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/sdk-python/src")
from kaon.v1 import job_service_pb2, job_service_pb2_grpc, run_pb2


async def main() -> None:
    calls, items, address, token = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
    )
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        job = job_service_pb2_grpc.JobServiceStub(channel)
        counters = [
            run_pb2.ReportItem(counter=run_pb2.Counter(name="c", delta=1))
            for _ in range(items - 1)
        ]
        next_seq = 1
        cpu0, t0 = time.process_time(), time.perf_counter()

        async def worker() -> None:
            nonlocal next_seq
            while next_seq <= calls:
                seq = next_seq
                next_seq += 1
                output = run_pb2.ReportItem(
                    output=run_pb2.Output(
                        name="n", value=struct_pb2.Value(number_value=seq)
                    )
                )
                request = job_service_pb2.ReportRequest(
                    sequence=seq, items=[output, *counters]
                )
                await job.Report(request, metadata=metadata)

        await asyncio.gather(*(worker() for _ in range(64)))
        ms = (time.perf_counter() - t0) * 1000
        print(json.dumps({"ms": ms, "cpuMs": (time.process_time() - cpu0) * 1000}))


asyncio.run(main())
