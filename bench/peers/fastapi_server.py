# The Python peer (Cortex's stack): FastAPI + uvicorn + onnxruntime, the raw float32 body into a numpy array, the
# first output's raw bytes back. Env: MODEL, INPUT_NAME, SHAPE (comma-separated), THREADS (intra-op per worker).
# Run: uvicorn fastapi_server:app --workers N (from this folder).
import asyncio.base_events
import os
import socket

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request, Response

# uvicorn --workers N binds its socket as socket.socket(AF_INET, SOCK_STREAM) (protocol 0), and asyncio sets
# TCP_NODELAY only on sockets whose protocol reads IPPROTO_TCP: every connection of a multi-worker uvicorn then had
# Nagle's algorithm on, and each keep-alive answer waited ~40 ms for the client's delayed ACK (p50 48 ms at any load,
# 20 req/s at concurrency 1). A user would set it; so does the peer, on every accepted socket.
def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


asyncio.base_events._set_nodelay = _set_nodelay  # type: ignore[attr-defined]

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("THREADS", "1"))
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(os.environ["MODEL"], options, providers=["CPUExecutionProvider"])
shape = [int(d) for d in os.environ["SHAPE"].split(",")]
input_name = os.environ["INPUT_NAME"]
app = FastAPI()


@app.get("/ping")
def ping() -> Response:
    return Response("ok")


@app.post("/")
async def infer(request: Request) -> Response:
    body = await request.body()
    data = np.frombuffer(body, dtype=np.float32).reshape(shape)
    out = session.run(None, {input_name: data})[0]
    return Response(out.tobytes(), media_type="application/octet-stream")
