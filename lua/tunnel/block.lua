-- tunnel.block: the original tunnel's module name for tunnel.Block.
-- require('tunnel.block') returns the class (the same object as
-- tunnel.Block) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Block
