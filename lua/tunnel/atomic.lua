-- tunnel.atomic: the original tunnel's module name for tunnel.Atomic.
-- require('tunnel.atomic') returns the class (the same object as
-- tunnel.Atomic) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Atomic
