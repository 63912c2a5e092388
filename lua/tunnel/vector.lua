-- tunnel.vector: the original tunnel's module name for tunnel.Vector.
-- require('tunnel.vector') returns the class (the same object as
-- tunnel.Vector) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Vector
