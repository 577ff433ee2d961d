"""The bare Flask hello world the runtime is measured against (runtimes/bench)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "hello"
