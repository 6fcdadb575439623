-- Shared by the workload scripts: prints one machine-readable line at the end
-- of a wrk run, which run.sh parses. Socket errors are wrk's own counters:
-- connect, read (includes resets), write and timeout; `status` counts
-- responses outside 2xx/3xx (every response of rej64 is a 413).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "LOADRESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d timeout=%d status=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(99)))
end
