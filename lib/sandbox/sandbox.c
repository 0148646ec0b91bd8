/* Placeholder until the sandbox worker lands; see sandbox.h. */
