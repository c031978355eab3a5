"""The wasm filter loads into a real Envoy and carries requests through it."""

from support.http import get


def test_request_passes_through_the_filter(start_envoy, upstream):
    env = start_envoy({})
    r = get(env.url("/hello?x=1"))
    assert r.status_code == 200, r.text
    echo = r.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/hello?x=1"
    # The filter ran on this request (both workers' VMs configured).
    assert echo["headers"].get("x-edgegate-filter") == "on"
    env.wait_log(r"wasm log edgegate edgegate: configured", count=1)
