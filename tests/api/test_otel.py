"""W3C trace context crosses an invocation when OpenTelemetry is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_traceparent_and_baggage_propagate_through_the_engine(iii_engine):
    # A fresh interpreter: OpenTelemetry's global provider can be set once per process.
    code = textwrap.dedent(f"""
        from opentelemetry import baggage, context, trace
        from opentelemetry.sdk.trace import TracerProvider

        import iii

        trace.set_tracer_provider(TracerProvider())
        tracer = trace.get_tracer("test")
        seen = {{}}

        def handler(data):
            span = trace.get_current_span().get_span_context()
            seen["trace_id"] = span.trace_id
            seen["baggage"] = baggage.get_baggage("tenant")
            return "ok"

        w = iii.register_worker({iii_engine.url!r}, iii.InitOptions(worker_name="otel"))
        w.register_function("otel::f", handler)
        with tracer.start_as_current_span("caller") as span:
            token = context.attach(baggage.set_baggage("tenant", "acme"))
            try:
                assert w.trigger({{"function_id": "otel::f", "payload": None}}) == "ok"
            finally:
                context.detach(token)
            expected = span.get_span_context().trace_id
        w.shutdown()
        assert seen["trace_id"] == expected, (seen, expected)
        assert seen["baggage"] == "acme", seen
        print("propagated", format(expected, "032x"))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    trace_id = result.stdout.split()[-1]
    calls = [
        f
        for f in iii_engine.frames(type="invokefunction", direction="in")
        if f.get("function_id") == "otel::f"
    ]
    assert calls and calls[0]["traceparent"].split("-")[1] == trace_id
    assert "tenant=acme" in calls[0]["baggage"]


def test_otel_enabled_false_sends_no_trace_context(iii_engine):
    code = textwrap.dedent(f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        import iii

        trace.set_tracer_provider(TracerProvider())
        w = iii.register_worker({iii_engine.url!r}, iii.InitOptions(worker_name="nootel"))
        w.register_function("nootel::f", lambda d: "ok")
        with trace.get_tracer("t").start_as_current_span("caller"):
            assert w.trigger({{"function_id": "nootel::f", "payload": None}}) == "ok"
        w.shutdown()
    """)
    env = {**os.environ, "OTEL_ENABLED": "false"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    calls = [
        f
        for f in iii_engine.frames(type="invokefunction", direction="in")
        if f.get("function_id") == "nootel::f"
    ]
    assert calls and "traceparent" not in calls[0]
