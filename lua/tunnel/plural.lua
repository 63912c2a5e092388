-- tunnel.plural: the original tunnel's module name for tunnel.Plural.
-- require('tunnel.plural') returns the class (the same object as
-- tunnel.Plural) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Plural
