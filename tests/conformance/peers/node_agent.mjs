// A test peer: one worker of the OFFICIAL Node SDK (npm iii-sdk 0.22.1).
//
//   node node_agent.mjs <engine url> <worker name> [--fast-reconnect] [--otel]
//                       [--header=name=value ...]
//
// The SDK is loaded from the npm project named by $III_NODE_PEER_ROOT (the
// conformance set-up installs it into .cache/peers/node), through the
// package's public entry points ("iii-sdk", "iii-sdk/helpers").
//
// Same line protocol as py_agent.py: "@@ {json}" lines on stdout ("ready",
// handler/provider events, one answer per command); JSON commands on stdin,
// run concurrently; "shutdown" (or the end of stdin) shuts down and exits.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const root = process.env.III_NODE_PEER_ROOT
if (!root) {
  console.error('III_NODE_PEER_ROOT is not set')
  process.exit(2)
}
const require = createRequire(join(root, 'package.json'))
const sdk = require('iii-sdk')
const helpers = require('iii-sdk/helpers')
const SDK_VERSION = JSON.parse(
  readFileSync(join(root, 'node_modules', 'iii-sdk', 'package.json'), 'utf-8'),
).version

const [url, name, ...flags] = process.argv.slice(2)

function emit(obj) {
  process.stdout.write('@@ ' + JSON.stringify(obj) + '\n')
}

function errorInfo(err) {
  return {
    type: err?.constructor?.name ?? typeof err,
    code: err?.code ?? null,
    message: err?.message ?? String(err),
    stacktrace: err?.stacktrace ?? null,
  }
}

const options = { workerName: name }
if (!flags.includes('--otel')) options.otel = { enabled: false }
const headers = Object.fromEntries(
  flags.filter((f) => f.startsWith('--header=')).map((f) => {
    const [k, ...v] = f.slice('--header='.length).split('=')
    return [k, v.join('=')]
  }),
)
if (Object.keys(headers).length) options.headers = headers
if (flags.includes('--fast-reconnect')) {
  options.reconnectionConfig = { initialDelayMs: 100, maxDelayMs: 500, jitterFactor: 0.1 }
}
const worker = sdk.registerWorker(url, options)

const functions = new Map()
const triggers = new Map()
const bindings = new Map() // provider side: binding id -> trigger config
const flakyCalls = new Map() // "flaky" handlers: calls so far, by function id

function makeHandler(functionId, behavior, args) {
  return async (data, metadata) => {
    switch (behavior) {
      case 'echo':
        return { echo: data, by: name }
      case 'record':
        emit({ event: 'invoked', function_id: functionId, data: data ?? null, metadata: metadata ?? null })
        return { recorded: functionId }
      case 'fail':
        throw new Error(args.message ?? 'handler failed')
      // -- queue/pubsub tests: report each call, fail the first `fail_times` --
      case 'flaky': {
        const calls = (flakyCalls.get(functionId) ?? 0) + 1
        flakyCalls.set(functionId, calls)
        emit({ event: 'invoked', function_id: functionId, data: data ?? null, attempt: calls })
        if (calls <= (args.fail_times ?? Infinity)) throw new Error(`attempt ${calls} failed`)
        return { attempt: calls }
      }
      case 'none':
        return undefined
      case 'sleep':
        emit({ event: 'sleeping', function_id: functionId })
        await new Promise((resolve) => setTimeout(resolve, (args.seconds ?? 1) * 1000))
        return { slept: args.seconds ?? 1 }
      case 'size': // the size of a (large) payload
        return { size: data.blob.length, by: name }
      case 'blob': // a large result
        return { blob: 'y'.repeat(args.size) }
      case 'const':
        return args.result
      case 'auth': // an RBAC auth function: record the input, grant
        emit({ event: 'auth', function_id: functionId, data })
        return args.result
      case 'sink': {
        const reader = data.reader
        const messages = []
        reader.onMessage((m) => messages.push(m))
        const body = await reader.readAll()
        return {
          reader_type: reader.constructor.name,
          bytes: body.length,
          text: body.toString('utf-8'),
          messages,
        }
      }
      case 'source': {
        const writer = data.writer
        writer.sendMessage(JSON.stringify({ from: name }))
        writer.stream.write(Buffer.from('hello '))
        writer.stream.write(Buffer.from('from ' + name))
        await new Promise((resolve) => writer.stream.end(resolve))
        return { writer_type: writer.constructor.name }
      }
      // -- the HTTP worker's routes (whttp) --
      case 'http_record': { // report the request, answer args.result
        const { request_body: requestBody, response, ...request } = data
        emit({
          event: 'http_request',
          function_id: functionId,
          request,
          request_body_type: requestBody?.constructor?.name ?? null,
          response_type: response?.constructor?.name ?? null,
          metadata: metadata ?? null,
        })
        return args.result
      }
      case 'http_stream': { // stream status, headers and an echo of the body
        const body = await data.request_body.readAll()
        const writer = data.response
        writer.sendMessage(JSON.stringify({ type: 'set_status', status_code: args.status ?? 200 }))
        writer.sendMessage(JSON.stringify({ type: 'set_headers', headers: args.headers ?? {} }))
        writer.stream.write(Buffer.concat([Buffer.from('echo: '), body]))
        await new Promise((resolve) => writer.stream.end(resolve))
        return undefined
      }
      default:
        throw new Error('unknown behavior ' + behavior)
    }
  }
}

const ops = {
  register_function(cmd) {
    const opts = {}
    if (cmd.description) opts.description = cmd.description
    if (cmd.metadata != null) opts.metadata = cmd.metadata
    const ref = worker.registerFunction(
      cmd.function_id,
      makeHandler(cmd.function_id, cmd.behavior ?? 'echo', cmd),
      opts,
    )
    functions.set(cmd.function_id, ref)
    return {}
  },
  register_http_function(cmd) {
    const invocation = { url: cmd.url, method: cmd.method ?? 'POST' }
    if (cmd.headers) invocation.headers = cmd.headers
    if (cmd.auth) invocation.auth = cmd.auth
    functions.set(cmd.function_id, worker.registerFunction(cmd.function_id, invocation))
    return {}
  },
  unregister_function(cmd) {
    functions.get(cmd.function_id).unregister()
    functions.delete(cmd.function_id)
    return {}
  },
  async trigger(cmd) {
    const request = { function_id: cmd.function_id }
    if ('payload' in cmd) request.payload = cmd.payload
    if (cmd.blob_size) request.payload = { blob: 'x'.repeat(cmd.blob_size) }
    if (cmd.action === 'void') request.action = sdk.TriggerAction.Void()
    else if (cmd.action && cmd.action.enqueue) {
      request.action = sdk.TriggerAction.Enqueue({ queue: cmd.action.enqueue })
    }
    if (cmd.metadata != null) request.metadata = cmd.metadata
    if (cmd.timeout_ms) request.timeoutMs = cmd.timeout_ms
    const result = await worker.trigger(request)
    if (cmd.summarize) return { result: { blob_len: result.blob.length } }
    return { result: result ?? null }
  },
  register_trigger_type(cmd) {
    const typeId = cmd.trigger_type
    worker.registerTriggerType(
      { id: typeId, description: cmd.description ?? 'conformance trigger type' },
      {
        async registerTrigger(config) {
          bindings.set(config.id, config)
          emit({ event: 'register_trigger', trigger_type: typeId, config })
          if (config.config && config.config.refuse) throw new Error(config.config.refuse)
        },
        async unregisterTrigger(config) {
          bindings.delete(config.id)
          emit({ event: 'unregister_trigger', trigger_type: typeId, config })
        },
      },
    )
    return {}
  },
  unregister_trigger_type(cmd) {
    worker.unregisterTriggerType({ id: cmd.trigger_type, description: 'conformance trigger type' })
    return {}
  },
  register_trigger(cmd) {
    const trigger = { type: cmd.trigger_type, function_id: cmd.function_id }
    if ('config' in cmd) trigger.config = cmd.config
    if (cmd.metadata != null) trigger.metadata = cmd.metadata
    triggers.set(cmd.key, worker.registerTrigger(trigger))
    return {}
  },
  unregister_trigger(cmd) {
    triggers.get(cmd.key).unregister()
    triggers.delete(cmd.key)
    return {}
  },
  async fire(cmd) {
    const config = bindings.get(cmd.binding_id)
    const result = await worker.trigger({
      function_id: config.function_id,
      payload: cmd.payload,
      metadata: config.metadata,
    })
    return { result: result ?? null }
  },
  async channel_send(cmd) {
    const channel = await helpers.createChannel(worker)
    const call = worker.trigger({
      function_id: cmd.function_id,
      payload: { reader: channel.readerRef },
    })
    const writer = channel.writer
    writer.sendMessage(JSON.stringify({ kind: 'meta', n: 2 }))
    writer.stream.write(Buffer.from('hello '))
    writer.stream.write(Buffer.from('world'))
    await new Promise((resolve) => writer.stream.end(resolve))
    return { result: await call, ref: channel.readerRef }
  },
  async channel_receive(cmd) {
    const channel = await helpers.createChannel(worker)
    const call = worker.trigger({
      function_id: cmd.function_id,
      payload: { writer: channel.writerRef },
    })
    const messages = []
    channel.reader.onMessage((m) => messages.push(m))
    const body = await channel.reader.readAll()
    return { result: await call, text: body.toString('utf-8'), messages }
  },
  // -- state/stream workers (tests/conformance/test_state_stream.py) ----------
  create_stream(cmd) {
    // Serve stream `stream_name` from memory with the SDK's createStream.
    const items = new Map()
    const streamName = cmd.stream_name
    const note = (op, data) => emit({ event: 'stream_op', stream: streamName, op, data })
    const key = (input) => JSON.stringify([input.group_id, input.item_id])
    helpers.createStream(worker, streamName, {
      async get(input) {
        note('get', input)
        return items.has(key(input)) ? items.get(key(input)) : null
      },
      async set(input) {
        note('set', input)
        const old = items.has(key(input)) ? items.get(key(input)) : null
        items.set(key(input), input.data)
        return { old_value: old, new_value: input.data }
      },
      async delete(input) {
        note('delete', input)
        const old = items.has(key(input)) ? items.get(key(input)) : null
        items.delete(key(input))
        return { old_value: old }
      },
      async list(input) {
        note('list', input)
        return [...items.entries()]
          .filter(([k]) => JSON.parse(k)[0] === input.group_id)
          .map(([, v]) => v)
      },
      async listGroups(input) {
        note('list_groups', input)
        return [...new Set([...items.keys()].map((k) => JSON.parse(k)[0]))].sort()
      },
      async update() {
        throw new Error('not served')
      },
    })
    return {}
  },
  state() {
    return { worker_id: null, state: null }
  },
  async sleep(cmd) {
    await new Promise((resolve) => setTimeout(resolve, (cmd.seconds ?? 0.1) * 1000))
    return {}
  },
}

async function run(cmd) {
  try {
    const out = await ops[cmd.op](cmd)
    emit({ id: cmd.id, ok: true, ...out })
  } catch (err) {
    emit({ id: cmd.id, ok: false, error: errorInfo(err), traceback: err?.stack ?? null })
  }
}

emit({
  event: 'ready',
  sdk: 'node',
  version: SDK_VERSION,
  module: require.resolve('iii-sdk'),
  worker_id: null,
  state: null,
})

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await worker.shutdown()
  emit({ event: 'bye' })
  process.exit(0)
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (!line.trim()) return
  const cmd = JSON.parse(line)
  if (cmd.op === 'shutdown') {
    stop()
    return
  }
  run(cmd)
})
rl.on('close', () => stop())
