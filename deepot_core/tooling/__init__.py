"""The tooling around the method: autoencoders to encode and decode, metrics to judge, restorers and
degradations to make test data, experiments and the command line. The method itself (statistics, the Gaussian
map, its patch application, the transport, the blend, colour harmonisation and the transport files) sits one
level up, in ``deepot_core``, and never imports from here.
"""
