-- tunnel.hash: the original tunnel's module name for tunnel.Hash.
-- require('tunnel.hash') returns the class (the same object as
-- tunnel.Hash) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Hash
