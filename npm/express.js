// The Express middleware for Node's import (the code is express.cjs, shared with require()).
import express from "./express.cjs";

export const { twimlGuard } = express;
