// Finding people: the search as you type, and a picker of several (a new group's members, or
// people to add to one).
import { useEffect, useState } from 'preact/hooks';
import type { Http, UserView } from '../api/http';
import { Avatar, Icon } from './util';

/** The people matching `q` (after a 150 ms pause in typing), without `me` and `exclude`. */
export function useUserSearch(http: Http, me: string, q: string, exclude: readonly string[] = []): UserView[] {
  const [results, setResults] = useState<UserView[]>([]);
  const skip = exclude.join(',');
  useEffect(() => {
    const term = q.trim().toLowerCase();
    if (!term) {
      setResults([]);
      return;
    }
    let live = true;
    const t = setTimeout(() => {
      const left = new Set([me, ...skip.split(',')]);
      http
        .searchUsers(term, 10)
        .then((r) => live && setResults(r.users.filter((u) => !left.has(u.username))))
        .catch(() => live && setResults([]));
    }, 150);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [q, http, me, skip]);
  return results;
}

/** A list of people found, each a button: `action` says what choosing one does ("Chat with"). */
export function PeopleFound({
  people,
  action,
  label,
  class: className,
  testId,
  onChoose,
}: {
  people: UserView[];
  action: string;
  label: string;
  class: string;
  testId: string;
  onChoose: (u: UserView) => void;
}) {
  if (people.length === 0) return null;
  return (
    <ul class={className} role="listbox" aria-label={label}>
      {people.map((u) => (
        <li key={u.id}>
          <button type="button" class="search-result" role="option" aria-label={`${action} ${u.display_name} (@${u.username})`} data-testid={testId} data-user={u.username} onClick={() => onChoose(u)}>
            <Avatar name={u.display_name} size={32} />
            <span>
              {u.display_name} <span class="muted small">@{u.username}</span>
            </span>
          </button>
        </li>
      ))}
    </ul>
  );
}

/** The names a picker holds: those picked from the search, then any typed and not picked. */
export function pickedNames(picked: readonly UserView[], typed: string): string[] {
  const names = picked.map((u) => u.username);
  for (const name of typed.split(/[\s,]+/).filter(Boolean)) if (!names.includes(name)) names.push(name);
  return names;
}

/** Search and pick several people: each pick becomes a removable chip; a user name typed in full
 * (commas between several) counts too. */
export function PeoplePicker({
  http,
  me,
  picked,
  onPicked,
  typed,
  onTyped,
  label,
  testId,
}: {
  http: Http;
  me: string;
  picked: UserView[];
  onPicked: (users: UserView[]) => void;
  typed: string;
  onTyped: (text: string) => void;
  label: string;
  testId: string;
}) {
  const results = useUserSearch(
    http,
    me,
    typed.split(',').pop() ?? '',
    picked.map((u) => u.username),
  );
  const pick = (u: UserView) => {
    onPicked([...picked, u]);
    onTyped(typed.includes(',') ? typed.slice(0, typed.lastIndexOf(',') + 1) : '');
  };
  return (
    <div class="people-picker">
      {picked.length > 0 && (
        <ul class="chips" aria-label="Picked">
          {picked.map((u) => (
            <li key={u.id} class="person-chip" data-testid="picked-person" data-user={u.username}>
              <Avatar name={u.display_name} size={20} />
              {u.display_name}
              <button type="button" class="icon-btn tiny" aria-label={`Remove ${u.display_name}`} onClick={() => onPicked(picked.filter((p) => p.id !== u.id))}>
                <Icon name="close" />
              </button>
            </li>
          ))}
        </ul>
      )}
      <input
        value={typed}
        placeholder="Search people, or type user names"
        aria-label={label}
        data-testid={testId}
        onInput={(e) => onTyped((e.target as HTMLInputElement).value)}
        onKeyDown={(e) => {
          if (e.key === 'Backspace' && !typed && picked.length) onPicked(picked.slice(0, -1));
        }}
      />
      <PeopleFound people={results} action="Add" label="People found" class="pick-results" testId="pick-result" onChoose={pick} />
    </div>
  );
}
