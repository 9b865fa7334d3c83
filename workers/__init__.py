"""arq workers: jobs written by the backend's services, and the crons that catch up."""
