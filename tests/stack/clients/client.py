"""One real Python client runs the README's scenarios; see ../real_clients.rs.

Usage: python3 client.py requests|httpx|aiohttp SCENARIO=BASE_URL ...
Prints one line per scenario: the scenario, then one field per request, tab-separated:
`STATUS BODY_BYTES`, or `error TYPE: MESSAGE`. Exit 3 when the library is missing.
"""
import sys

MIB = 1024 * 1024
TIMEOUT = 10
lib = sys.argv[1]


def chunks(total, size=4096):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"a" * n


def plan(scenario, base):
    """(path, body, headers) for each request of a scenario."""
    second = ("/consume", b"a=b&x=y", {})
    if scenario == "chunked64":
        return [("/ignore", "chunked", {}), second]
    if scenario == "over_limit":
        return [("/ignore", b"a" * MIB, {}), second]
    if scenario == "early413":
        return [("/upload", b"u" * (16 * MIB), {})]
    if scenario == "big_close":
        return [("/big", b"b" * (64 * 1024), {"Connection": "close"})]
    raise SystemExit("unknown scenario " + scenario)


def describe(error):
    return "error " + type(error).__name__ + ": " + " ".join(str(error).split())


def run_sync(session_factory, post):
    for pair in sys.argv[2:]:
        scenario, base = pair.split("=", 1)
        fields = []
        with session_factory() as session:
            for path, body, headers in plan(scenario, base):
                if body == "chunked":
                    body = chunks(64 * 1024)
                try:
                    fields.append(post(session, base + path, body, headers))
                except Exception as error:  # noqa: BLE001 - the text is the measurement
                    fields.append(describe(error))
        print(scenario + "\t" + "\t".join(fields), flush=True)


if lib == "requests":
    try:
        import requests
    except ImportError:
        sys.exit(3)

    def post(session, url, body, headers):
        response = session.post(url, data=body, headers=headers, timeout=TIMEOUT)
        return f"{response.status_code} {len(response.content)}"

    run_sync(requests.Session, post)
elif lib == "httpx":
    try:
        import httpx
    except ImportError:
        sys.exit(3)

    def post(session, url, body, headers):
        response = session.post(url, content=body, headers=headers)
        return f"{response.status_code} {len(response.content)}"

    run_sync(lambda: httpx.Client(timeout=TIMEOUT), post)
elif lib == "aiohttp":
    try:
        import asyncio

        import aiohttp
    except ImportError:
        sys.exit(3)

    async def agen(total, size=4096):
        for piece in chunks(total, size):
            yield piece

    async def main():
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        for pair in sys.argv[2:]:
            scenario, base = pair.split("=", 1)
            fields = []
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for path, body, headers in plan(scenario, base):
                    if body == "chunked":
                        body = agen(64 * 1024)
                    try:
                        async with session.post(base + path, data=body, headers=headers) as response:
                            content = await response.read()
                            fields.append(f"{response.status} {len(content)}")
                    except Exception as error:  # noqa: BLE001
                        fields.append(describe(error))
            print(scenario + "\t" + "\t".join(fields), flush=True)

    asyncio.run(main())
else:
    sys.exit("unknown library " + lib)
