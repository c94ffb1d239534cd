"""Will this image pull on this node? Causes 1 to 3 of ImagePullBackOff, named for one image.

`reference` reads an image reference as containerd does; `keyring` offers credentials as the
kubelet does; `pull` classifies the registry's answers (sans-IO); `auth` asks a registry's
token service; `result` is the report; `check` walks the node's pull plan with them (it sits
above the engine, which gives it the plan and the hosts' connectivity).
"""
