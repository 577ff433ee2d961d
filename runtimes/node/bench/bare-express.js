'use strict';
// The bare Express hello world the runtime is measured against (runtimes/bench).
const express = require('express');

const app = express();
app.get('/', (req, res) => {
  res.send('hello');
});
app.listen(Number(process.env.PORT || 8080), process.env.SKIPPER_HOST || '0.0.0.0');
process.on('SIGTERM', () => process.exit(0));
