/**
 * `npm run repl`: a Node REPL with a started NewPiecePlease bound to `NPP`
 * (top-level `await` works), as in the tutorial.
 *
 *   NPP_DIR=./my-catalog npm run repl     (default ./.npp)
 *   NPP_STORAGE=memory npm run repl       (nothing written to disk)
 *   NPP_LISTEN=/ip4/0.0.0.0/tcp/4002 npm run repl
 *   NPP_BOOTSTRAP=/ip4/127.0.0.1/tcp/4002/p2p/12D3... npm run repl
 */
import repl from 'node:repl'
import * as npp from 'new-piece-please'

const split = (value: string | undefined): string[] | undefined => value == null || value === '' ? undefined : value.split(',')

const NPP = await npp.createNewPiecePlease({
  directory: process.env.NPP_DIR,
  storage: process.env.NPP_STORAGE === 'memory' ? 'memory' : 'persistent',
  listen: split(process.env.NPP_LISTEN),
  bootstrap: split(process.env.NPP_BOOTSTRAP),
  username: process.env.NPP_USERNAME
})

console.log(`NewPiecePlease ${NPP.peerId} is ready as NPP, listening on:\n  ${NPP.getMultiaddrs().join('\n  ')}`)
console.log('Try: await NPP.addNewPiece("QmNR2n4zywCV61MeMLB6JwPueAPqheqpfiA4fLPMxouEmQ")  ·  await NPP.getAllPieces()  ·  .exit to leave')

const server = repl.start({ prompt: 'npp> ' })
server.context.NPP = NPP
server.context.npp = npp
server.on('exit', () => {
  NPP.stop().then(() => { console.log('stopped') }, (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
})
