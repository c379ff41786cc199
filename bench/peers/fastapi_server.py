# The Python peer (Cortex's stack): FastAPI + uvicorn + onnxruntime, the raw float32 body into a numpy array, the
# first output's raw bytes back. Env: MODEL, INPUT_NAME, SHAPE (comma-separated), THREADS (intra-op per worker).
# Run: uvicorn fastapi_server:app --workers N (from this folder).
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request, Response

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
