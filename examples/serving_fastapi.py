"""A FastAPI service that serves an Anthropic model through modelwatch's serving client.

Run: ``uvicorn examples.serving_fastapi:app``. The router splits traffic per experiment
``exp-042`` with the same sticky assignment modelwatch checks, follows rollbacks written
to the routing document (no deploy), mirrors 5% of requests to a shadow candidate without
touching the user's response, and the emitter writes one contract row per request (and per
shadow call) to S3 from a background thread, spilling to local disk while S3 is unreachable.

Configuration comes from the environment: ``MODELWATCH_LOGS_URI`` (where logs go),
``MODELWATCH_ROUTING_URI`` (the model's ``rollback.uri``), ``MODELWATCH_S3_ENDPOINT`` (an
S3-compatible endpoint, optional), ``MODELWATCH_SPILL_DIR``; the Anthropic SDK reads
``ANTHROPIC_API_KEY`` (and ``ANTHROPIC_BASE_URL``) itself.
"""

import os
from contextlib import asynccontextmanager

import anthropic
from fastapi import FastAPI
from modelwatch.serving import Experiment, KillSwitch, LogEmitter, Price, Router, Shadow, serving_s3_client
from modelwatch.serving.prometheus import register
from pydantic import BaseModel

claude = anthropic.AsyncAnthropic()
s3 = serving_s3_client(endpoint_url=os.environ.get("MODELWATCH_S3_ENDPOINT"))  # short timeouts: S3 down means spill, not slow requests


def model(name: str):
    async def call(prompt: str):
        return await claude.messages.create(model=name, max_tokens=512, messages=[{"role": "user", "content": prompt}])

    return call


emitter = LogEmitter(s3, os.environ.get("MODELWATCH_LOGS_URI", "s3://ml-logs/inference"), "support-bot-v3", "llm",
                     price=Price(prompt_per_1k=0.0005, completion_per_1k=0.0015),
                     tokenizer=lambda text: max(1, round(len(text.split()) * 1.3)),  # only for failed calls (no usage object); use your model's tokenizer
                     redact=True, spill_dir=os.environ.get("MODELWATCH_SPILL_DIR", "/var/spool/modelwatch"))
router = Router(emitter,
                control=model("support-bot-v3"), treatment=model("support-bot-v3-rc2"),
                experiment=Experiment("exp-042", {"control": 0.9, "treatment": 0.1}),
                kill_switch=KillSwitch(s3, os.environ.get("MODELWATCH_ROUTING_URI", "s3://ml-serving/routing/support-bot-v3.json"), refresh_s=30),
                shadow=Shadow(model("support-bot-v4-candidate"), timeout_s=5, share=0.05))
register(emitter, router)  # modelwatch_emitter_* and router counters on the default Prometheus registry


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    router.close()
    emitter.close()  # flushes what is buffered (also done at exit)


app = FastAPI(lifespan=lifespan)


class Ask(BaseModel):
    question: str
    topic: str | None = None
    user_id: str | None = None


@app.post("/answer")
async def answer(body: Ask):
    message = await router.acall(body.question, unit_id=body.user_id, metadata={"topic": body.topic})
    return {"answer": message.content[0].text}
