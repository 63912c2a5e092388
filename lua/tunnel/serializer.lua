-- tunnel.serializer: the original tunnel's module name for tunnel.Serializer.
-- require('tunnel.serializer') returns the class (the same object as
-- tunnel.Serializer) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Serializer
