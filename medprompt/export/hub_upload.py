"""`medprompt export ... --push OWNER/NAME`: an exported folder uploaded to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from medprompt.common.errors import MedpromptError


def check_repo_id(repo_id: str) -> None:
    """Refuse, before anything is exported, a repository name the Hub would refuse."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("expected OWNER/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise MedpromptError(f"--push {repo_id}: not a Hub repository name ({str(exc).splitlines()[0]})") from None


def push(folder: Path, repo_id: str, private: bool = False) -> str:
    """Create the model repository if needed and upload `folder` as one commit; returns the repository's URL.
    Needs a token (`hf auth login` or $HF_TOKEN)."""
    from huggingface_hub import HfApi, get_token

    check_repo_id(repo_id)
    if get_token() is None:
        raise MedpromptError("--push: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN (the "
                             f"export in {folder} is kept)")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=f"medprompt export of {folder.name}")
    except Exception as exc:  # noqa: BLE001 - network, auth and Hub errors all end the push in one line
        raise MedpromptError(f"--push {repo_id}: the upload failed ({str(exc).strip().splitlines()[0][:200]}); "
                             f"the export in {folder} is kept") from None
    return str(url)
